//! `PUT /providers/<host>/<ns>/<type>/<zip>`: a provider zip handed over by
//! `tfmirror cache import`, stored by the server because the server is the
//! one process that writes to the cache.
//!
//! The zip comes from the user's own disk (a `terraform providers mirror`
//! directory whose hashes the importer has checked), not from a registry,
//! so there is no SHA256SUMS to check it against here. What the server does
//! check: that it is a zip Terraform could unpack (its `h1:` can be
//! computed), and that it does not contradict a zip already cached. A
//! browser cannot send a cross-origin PUT without a CORS preflight, which
//! is never answered, so a web page cannot use this.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::StatusCode;

use super::hashes;
use super::network_mirror::{zip_route, H1_KEY_PREFIX};
use super::package::zip_path;
use super::Providers;
use crate::response::{self, Response};
use crate::store::{BlobWriter, Document};

impl Providers {
    pub async fn import_zip(&self, segments: &[String], body: Incoming) -> Response {
        let package = match zip_route(segments) {
            Ok(package) => package,
            Err(e) => return e.response("provider zip"),
        };
        let rel = zip_path(&package);
        let _one_writer = self.locks.lock(&rel.key()).await;
        let mut writer = match self.store.writer(&rel) {
            Ok(writer) => writer,
            Err(e) => {
                let what = format!("imported {package}");
                return response::store_failed(&self.store.write_error(what, e));
            }
        };
        match receive(body, &mut writer).await {
            Ok(()) => {}
            Err(Upload::Broken(e)) => {
                let message = format!("{package}: the upload broke off: {e}");
                return response::error(StatusCode::BAD_REQUEST, &message);
            }
            Err(Upload::Store(e)) => {
                let what = format!("imported {package}");
                return response::store_failed(&self.store.write_error(what, e));
            }
        }
        let written = writer.written();
        if let Some(cached) = self.cached_sha256(&rel).await {
            return if cached == written.sha256 {
                response::error(StatusCode::OK, &format!("{package} is already cached"))
            } else {
                let message = format!(
                    "{package} is cached with sha256 {cached}, the imported zip has {}",
                    written.sha256
                );
                response::error(StatusCode::CONFLICT, &message)
            };
        }
        let staged = match writer.staged().await {
            Ok(path) => path.to_owned(),
            Err(e) => {
                let what = format!("imported {package}");
                return response::store_failed(&self.store.write_error(what, e));
            }
        };
        let h1 = match tokio::task::spawn_blocking(move || hashes::zip_h1(&staged)).await {
            Ok(Ok(h1)) => h1,
            Ok(Err(e)) => {
                let message = format!("{package} is not a usable provider zip: {e}");
                return response::error(StatusCode::UNPROCESSABLE_ENTITY, &message);
            }
            Err(e) => return response::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        if let Err(e) = self.store.commit(&rel, writer).await {
            let what = format!("imported {package}");
            return response::store_failed(&self.store.write_error(what, e));
        }
        let doc = Document::now(h1.values().join(" "));
        if let Err(e) = self
            .store
            .documents()
            .put(&format!("{H1_KEY_PREFIX}{}", rel.key()), &doc)
        {
            tracing::warn!("cannot record the h1 hash of {package}: {e}");
        }
        tracing::info!("imported {package} ({} bytes)", written.size);
        response::error(StatusCode::CREATED, &format!("imported {package}"))
    }
}

enum Upload {
    Broken(hyper::Error),
    Store(std::io::Error),
}

/// Streams the request body into the writer.
async fn receive(mut body: Incoming, writer: &mut BlobWriter) -> Result<(), Upload> {
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Upload::Broken)?;
        if let Some(chunk) = frame.data_ref() {
            writer.write(chunk).await.map_err(Upload::Store)?;
        }
    }
    Ok(())
}
