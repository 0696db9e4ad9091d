//! Bundles: the closure of one or more runs (every artifact and document
//! they were served, and their git mirrors) written down as one file with
//! a manifest of hashes, to be checked and replayed where there is no
//! network. `format` is the file format; `write` makes one, `read` reads
//! one as hostile input, `verify` adds the provider signature checks.

pub mod format;
pub mod read;
pub mod verify;
pub mod write;

#[cfg(test)]
mod tests;
