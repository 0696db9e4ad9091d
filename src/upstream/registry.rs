//! Registry API requests through the metadata cache: find the service's
//! real URL by discovery, fetch below it, check the answer, store it.

use std::time::Duration;

use url::Url;

use super::{ApiAnswer, Discovery, Forwarded, Upstream};
use crate::store::{Documents, FetchError, Freshness, Served};

#[derive(Clone)]
pub struct RegistryClient {
    upstream: Upstream,
    discovery: Discovery,
    documents: Documents,
}

/// One cached registry API document.
pub struct ApiRequest {
    /// Index key of the document.
    pub key: String,
    pub host: String,
    /// Discovery service name, e.g. `providers.v1`.
    pub service: &'static str,
    /// Path below the service's base URL.
    pub path: String,
    pub freshness: Freshness,
    /// How long a caller with a cached copy waits for the upstream before
    /// the cached copy is served instead.
    pub deadline: Duration,
}

impl RegistryClient {
    pub fn new(upstream: Upstream, discovery: Discovery, documents: Documents) -> RegistryClient {
        RegistryClient {
            upstream,
            discovery,
            documents,
        }
    }

    /// Serves the document from the cache by its freshness rules, fetching
    /// it when needed. `prepare` checks the upstream's answer (given the URL
    /// it came from, for resolving relative references) and returns what to
    /// store; a refusal counts as the upstream being unavailable.
    pub async fn get(
        &self,
        request: ApiRequest,
        forwarded: &Forwarded,
        prepare: impl FnOnce(&ApiAnswer, &Url) -> Result<String, String> + Send + 'static,
    ) -> Result<Served, FetchError> {
        let discovery = self.discovery.clone();
        let upstream = self.upstream.clone();
        let forwarded = forwarded.clone();
        let ApiRequest {
            key,
            host,
            service,
            path,
            freshness,
            deadline,
        } = request;
        let fetch = move || async move {
            let base = discovery.service_url(&host, service, &forwarded).await?;
            let url = base.join(&path).map_err(|e| {
                FetchError::Unavailable(format!("cannot build the upstream URL: {e}"))
            })?;
            let answer = upstream.get_api(&url, &forwarded).await?;
            prepare(&answer, &url)
                .map_err(|e| FetchError::Unavailable(format!("{url}: malformed answer: {e}")))
        };
        self.documents.get(&key, freshness, deadline, fetch).await
    }
}
