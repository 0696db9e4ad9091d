//! A second tier held in memory, for tests: it records what it was
//! offered, and serves what a test puts in `objects` (by cache key, or by
//! document key).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use futures_util::future::BoxFuture;

use super::{BlobWriter, RelPath, SecondTier};

#[derive(Default)]
pub struct MemoryTier {
    pub objects: Mutex<HashMap<String, Vec<u8>>>,
    pub offered: Mutex<Vec<String>>,
}

impl MemoryTier {
    /// Puts `bytes` in the tier under `key` (a cache key or a document key).
    pub fn put(&self, key: impl Into<String>, bytes: &[u8]) {
        self.objects
            .lock()
            .unwrap()
            .insert(key.into(), bytes.to_vec());
    }
}

impl SecondTier for MemoryTier {
    fn fetch<'a>(
        &'a self,
        rel: &'a RelPath,
        writer: &'a mut BlobWriter,
        max_size: u64,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let bytes = self.objects.lock().unwrap().get(&rel.key()).cloned();
            match bytes {
                Some(bytes) if bytes.len() as u64 <= max_size => writer.write(&bytes).await.is_ok(),
                _ => false,
            }
        })
    }

    fn fetch_bytes<'a>(
        &'a self,
        rel: &'a RelPath,
        _max_size: u64,
    ) -> BoxFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move { self.objects.lock().unwrap().get(&rel.key()).cloned() })
    }

    fn fetch_document<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move { self.objects.lock().unwrap().get(key).cloned() })
    }

    fn offer_document(&self, key: &str, encoded: Vec<u8>) {
        self.objects.lock().unwrap().insert(key.to_owned(), encoded);
        self.offered.lock().unwrap().push(key.to_owned());
    }

    fn offer(&self, rel: &RelPath, path: PathBuf) {
        let bytes = std::fs::read(path).unwrap();
        self.objects.lock().unwrap().insert(rel.key(), bytes);
        self.offered.lock().unwrap().push(rel.key());
    }

    fn describe(&self) -> String {
        "the memory tier".into()
    }
}
