//! The shared tier behind the store ([`SecondTier`]) and behind the git
//! mirrors ([`BundleShelf`]): where each kind of thing is found in the
//! bucket ([`ObjectKey`]) and how big it may be. What is read here is
//! checked by the caller before it is kept.

use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;

use super::{Fetched, ObjectKey, SharedTier};
use crate::git::bundle::BundleShelf;
use crate::git::RepoId;
use crate::store::{BlobWriter, RelPath, SecondTier};

/// A bundle of one git mirror larger than this is not read from the
/// bucket: a module repository's whole history is far smaller.
const MAX_BUNDLE_SIZE: u64 = 8 << 30;

/// The shared tier with the caps of what is read from it.
pub struct SharedStore {
    tier: SharedTier,
    /// `max_metadata_size`: a document read from the bucket.
    max_document_size: u64,
}

impl SharedStore {
    pub fn new(tier: SharedTier, max_document_size: u64) -> SharedStore {
        SharedStore {
            tier,
            max_document_size,
        }
    }
}

impl SecondTier for SharedStore {
    fn fetch<'a>(
        &'a self,
        rel: &'a RelPath,
        writer: &'a mut BlobWriter,
        max_size: u64,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let key = ObjectKey::artifact(rel);
            matches!(
                self.tier.fetch_into(&key, writer, max_size).await,
                Fetched::Got(_)
            )
        })
    }

    fn fetch_bytes<'a>(
        &'a self,
        rel: &'a RelPath,
        max_size: u64,
    ) -> BoxFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let key = ObjectKey::artifact(rel);
            Some(self.tier.get_bytes(&key, max_size).await?.to_vec())
        })
    }

    fn fetch_document<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let key = ObjectKey::document(key).ok()?;
            let bytes = self.tier.get_bytes(&key, self.max_document_size).await?;
            Some(bytes.to_vec())
        })
    }

    fn offer_document(&self, key: &str, encoded: Vec<u8>) {
        match ObjectKey::document(key) {
            Ok(key) => self.tier.upload_bytes(key, encoded.into()),
            Err(e) => tracing::debug!("not sharing document {key}: {e}"),
        }
    }

    fn offer(&self, rel: &RelPath, path: PathBuf) {
        self.tier.upload_file(ObjectKey::artifact(rel), path);
    }

    fn describe(&self) -> String {
        self.tier.url().to_owned()
    }
}

impl BundleShelf for SharedStore {
    fn fetch<'a>(&'a self, repo: &'a RepoId, dest: &'a Path) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let key = ObjectKey::git_bundle(&repo.mirror_dir());
            let Ok(mut writer) = BlobWriter::create(dest) else {
                return false;
            };
            match self
                .tier
                .fetch_into(&key, &mut writer, MAX_BUNDLE_SIZE)
                .await
            {
                Fetched::Got(_) => writer.commit().await.is_ok(),
                Fetched::Missing | Fetched::Failed => false,
            }
        })
    }

    fn offer(&self, repo: &RepoId, bundle: PathBuf) {
        let key = ObjectKey::git_bundle(&repo.mirror_dir());
        let tier = self.tier.clone();
        tokio::spawn(async move {
            if let Err(e) = tier.upload_file_now(&key, &bundle).await {
                tracing::debug!("the bundle {key} was not shared: {e}");
            }
            let _ = tokio::fs::remove_file(&bundle).await;
        });
    }
}
