//! Metadata documents as files: the copy the index is rebuilt from.
//!
//! Every document the index holds (version lists, download answers, module
//! locations, archive origins, provider hashes) is also written here, one
//! file per key, atomically, so that losing the index loses nothing needed
//! to answer offline. A file is named by the sha256 of its key (keys are
//! URLs and paths, not file names) and holds the key, the fetch time, the
//! hash of the credential that fetched it (never the credential) and the
//! body.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::index::{Document, Index};
use super::layout::{Bucket, TEMP_PREFIX};

#[derive(Serialize)]
struct RecordRef<'a> {
    key: &'a str,
    fetched_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    credential_sha256: Option<&'a str>,
    body: &'a str,
}

#[derive(Deserialize)]
struct Record {
    key: String,
    fetched_at_ms: u64,
    #[serde(default)]
    credential_sha256: Option<String>,
    body: String,
}

impl Record {
    /// The document, if the record is the one for `key`.
    fn document_for(self, key: &str) -> Option<Document> {
        (self.key == key).then(|| self.into_document().1)
    }

    fn into_document(self) -> (String, Document) {
        let doc = Document {
            fetched_at_ms: self.fetched_at_ms,
            body: self.body.into(),
            credential_sha256: self.credential_sha256,
        };
        (self.key, doc)
    }
}

enum Job {
    Write(String, Document),
    Remove(String),
    Done(mpsc::Sender<()>),
}

/// Writes and removes document files on a thread of its own, in the order
/// asked: an fsync costs milliseconds, which no request should wait for
/// (a run of `init` stores a document per module). [`FileWriter::wait`]
/// returns once everything asked before it is on disk.
pub struct FileWriter {
    jobs: mpsc::Sender<Job>,
}

impl FileWriter {
    /// The thread ends when the writer is dropped.
    pub fn start(root: &Path) -> FileWriter {
        let (jobs, queue) = mpsc::channel();
        let root = root.to_owned();
        std::thread::Builder::new()
            .name("document-files".into())
            .spawn(move || {
                for job in queue {
                    match job {
                        Job::Write(key, doc) => {
                            if let Err(e) = write(&root, &key, &doc) {
                                tracing::warn!("cannot write the file of document {key}: {e}");
                            }
                        }
                        Job::Remove(key) => {
                            if let Err(e) = remove(&root, &key) {
                                tracing::warn!("cannot remove the file of document {key}: {e}");
                            }
                        }
                        Job::Done(done) => drop(done.send(())),
                    }
                }
            })
            .expect("start the document file writer");
        FileWriter { jobs }
    }

    pub fn write(&self, key: &str, doc: &Document) {
        self.send(Job::Write(key.to_owned(), doc.clone()));
    }

    pub fn remove(&self, key: &str) {
        self.send(Job::Remove(key.to_owned()));
    }

    /// Blocks until every write and removal asked for so far is done.
    pub fn wait(&self) {
        let (done, finished) = mpsc::channel();
        self.send(Job::Done(done));
        let _ = finished.recv();
    }

    fn send(&self, job: Job) {
        if self.jobs.send(job).is_err() {
            tracing::warn!("the document file writer has stopped");
        }
    }
}

/// Where the document `key` is kept below `root`.
pub fn path(root: &Path, key: &str) -> PathBuf {
    let name = hex::encode(Sha256::digest(key.as_bytes()));
    Bucket::Documents
        .path(root)
        .join(&name[..2])
        .join(format!("{name}.json"))
}

/// Writes `doc` for `key`: to a temporary file beside its place, fsynced,
/// then renamed, so a reader finds the old copy or the new one. Blocks.
pub fn write(root: &Path, key: &str, doc: &Document) -> io::Result<()> {
    let target = path(root, key);
    let dir = target.parent().expect("document paths have a parent");
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)?;
    {
        let mut out = io::BufWriter::new(temp.as_file_mut());
        serde_json::to_writer(&mut out, &record(key, doc)).map_err(io::Error::other)?;
        out.flush()?;
    }
    temp.as_file().sync_all()?;
    temp.persist(&target).map_err(|e| e.error)?;
    Ok(())
}

/// The document kept for `key`, if there is a readable one.
pub fn read(root: &Path, key: &str) -> io::Result<Option<Document>> {
    let bytes = match std::fs::read(path(root, key)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let record: Record = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
    Ok(record.document_for(key))
}

fn record<'a>(key: &'a str, doc: &'a Document) -> RecordRef<'a> {
    RecordRef {
        key,
        fetched_at_ms: doc.fetched_at_ms,
        credential_sha256: doc.credential_sha256.as_deref(),
        body: &doc.body,
    }
}

/// `doc` for `key` in the format of its file, to share it beyond this
/// cache.
pub fn encode(key: &str, doc: &Document) -> Vec<u8> {
    serde_json::to_vec(&record(key, doc)).expect("a record serialises")
}

/// A document [`encode`]d for `key`; `None` when the bytes are not one,
/// or are one for another key.
pub fn decode(key: &str, bytes: &[u8]) -> Option<Document> {
    serde_json::from_slice::<Record>(bytes)
        .ok()?
        .document_for(key)
}

/// Removes the file of `key`, if any.
pub fn remove(root: &Path, key: &str) -> io::Result<()> {
    match std::fs::remove_file(path(root, key)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Puts every document file below `root` into `index`; an unreadable file
/// (damaged by hand: writes are atomic) is skipped. Returns how many.
pub fn restore(root: &Path, index: &Index) -> io::Result<usize> {
    let top = Bucket::Documents.path(root);
    let shards = match std::fs::read_dir(&top) {
        Ok(shards) => shards,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut count = 0;
    for shard in shards {
        let shard = shard?;
        if !shard.file_type()?.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(shard.path())? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TEMP_PREFIX) || !name.ends_with(".json") {
                continue;
            }
            let record = std::fs::read(entry.path())
                .map_err(io::Error::other)
                .and_then(|bytes| {
                    serde_json::from_slice::<Record>(&bytes).map_err(io::Error::other)
                });
            match record {
                Ok(record) => {
                    let (key, doc) = record.into_document();
                    if let Err(e) = index.put_document(&key, &doc) {
                        tracing::warn!("cannot re-index document {key}: {e}");
                        continue;
                    }
                    count += 1;
                }
                Err(e) => {
                    tracing::warn!(
                        "skipping unreadable document {}: {e}",
                        entry.path().display()
                    )
                }
            }
        }
    }
    Ok(count)
}

/// Writes every document of `index` that has no file yet: an index made
/// before documents were kept as files. Returns how many were written.
pub fn export_missing(root: &Path, index: &Index) -> io::Result<usize> {
    let mut count = 0;
    for (key, doc) in index.all_documents() {
        if !path(root, &key).exists() {
            write(root, &key, &doc)?;
            count += 1;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_documents_come_back_into_a_new_index() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let private = Document {
            fetched_at_ms: 7,
            body: "secret list".to_owned().into(),
            credential_sha256: Some("ab".into()),
        };
        write(root, "providers/versions/h/a/b", &private).unwrap();
        write(root, "https://x/y?z=1", &Document::public(9, "origin")).unwrap();
        assert_eq!(
            read(root, "providers/versions/h/a/b").unwrap(),
            Some(private.clone())
        );
        assert_eq!(read(root, "nothing").unwrap(), None);

        let index = Index::open(&root.join("index")).unwrap().index;
        assert_eq!(restore(root, &index).unwrap(), 2);
        assert_eq!(
            index.document("providers/versions/h/a/b").unwrap(),
            Some(private)
        );
        assert_eq!(
            index.document("https://x/y?z=1").unwrap(),
            Some(Document::public(9, "origin"))
        );
        remove(root, "https://x/y?z=1").unwrap();
        assert_eq!(read(root, "https://x/y?z=1").unwrap(), None);
    }
}
