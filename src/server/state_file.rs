//! `<cache>/server.json`: how other tfmirror processes find the server
//! that owns a cache directory, and the secret that makes them its owner.
//! Mode 0600: whoever can read it can use and change the cache. The
//! record itself is [`ServerInfo`], in `protocol`.

use std::path::{Path, PathBuf};

pub use crate::protocol::ServerInfo;

use crate::store::layout::SERVER_JSON;

pub fn path(cache_dir: &Path) -> PathBuf {
    cache_dir.join(SERVER_JSON)
}

/// Written atomically, so a reader never sees half a file, with mode 0600
/// (the replacing file's own), so no other user reads the secret.
pub fn write(cache_dir: &Path, info: &ServerInfo) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(info).expect("server info serializes");
    crate::replace_file::replace(&path(cache_dir), &json, None)
}

/// The recorded server, if the file exists and is readable. Whether that
/// server still runs is for the caller to check.
pub fn read(cache_dir: &Path) -> Option<ServerInfo> {
    let bytes = std::fs::read(path(cache_dir)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Removes the file if it still describes this process; a newer server may
/// have replaced it.
pub fn remove_own(cache_dir: &Path) {
    remove_if_pid(cache_dir, std::process::id());
}

/// Removes the file if it describes process `pid`.
pub fn remove_if_pid(cache_dir: &Path, pid: u32) {
    if read(cache_dir).is_some_and(|info| info.pid == pid) {
        let _ = std::fs::remove_file(path(cache_dir));
    }
}
