//! Registry API requests through the metadata cache: find the service's
//! real URL by discovery, fetch below it, check the answer, store it, and
//! serve a copy fetched with a credential only to whom it may belong (see
//! [`super::access`]).

use std::time::Duration;

use url::Url;

use super::access::{AcceptedCredentials, Grants};
use super::{ApiAnswer, Discovery, Forwarded, Upstream};
use crate::server_key::ServerKey;
use crate::store::{Document, Documents, FetchError, Freshness, Reader, Served};

#[derive(Clone)]
pub struct RegistryClient {
    upstream: Upstream,
    discovery: Discovery,
    documents: Documents,
    accepted: AcceptedCredentials,
    grants: Grants,
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
    /// The grant the client presented for this document, from one of
    /// tfmirror's URLs (see [`RegistryClient::grant_for`]): it may read a
    /// private copy without a credential.
    pub grant: Option<String>,
}

impl RegistryClient {
    /// Grants are made under `key`, the server's.
    pub fn new(
        upstream: Upstream,
        discovery: Discovery,
        documents: Documents,
        key: ServerKey,
    ) -> RegistryClient {
        RegistryClient {
            accepted: AcceptedCredentials::new(discovery.metadata_ttl()),
            grants: Grants::new(key),
            upstream,
            discovery,
            documents,
        }
    }

    /// Serves the document from the cache by its freshness and privacy
    /// rules, fetching it when needed. `prepare` checks the upstream's
    /// answer (given the URL it came from, for resolving relative
    /// references) and returns what to store; a refusal counts as the
    /// upstream being unavailable.
    pub async fn get<E: std::fmt::Display>(
        &self,
        request: ApiRequest,
        forwarded: &Forwarded,
        prepare: impl FnOnce(&ApiAnswer, &Url) -> Result<String, E> + Send + 'static,
    ) -> Result<Served, FetchError> {
        let reader = self.reader(
            &request.host,
            &request.key,
            forwarded,
            request.grant.as_deref(),
        );
        let discovery = self.discovery.clone();
        let upstream = self.upstream.clone();
        let accepted = self.accepted.clone();
        let credential = self
            .upstream
            .effective_credential(&request.host, forwarded)
            .cloned();
        let forwarded = forwarded.clone();
        // A caller with a copy it may read serves that copy while the
        // upstream is not answering, rather than wait for it.
        let has_fallback = self
            .documents
            .cached(&request.key)
            .is_some_and(|doc| reader.may_read(&doc));
        let ApiRequest {
            key,
            host,
            service,
            path,
            freshness,
            deadline,
            grant: _,
        } = request;
        let fetch = move || async move {
            let base = discovery.service_url(&host, service, &forwarded).await?;
            let url = base.join(&path).map_err(|e| {
                FetchError::Unavailable(format!("cannot build the upstream URL: {e}"))
            })?;
            let answer = upstream
                .get_api(&url, credential.as_ref(), &forwarded, has_fallback)
                .await?;
            if let Some(credential) = &credential {
                accepted.record(&host, &credential.sha256());
            }
            prepare(&answer, &url)
                .map_err(|e| FetchError::Unavailable(format!("{url}: malformed answer: {e}")))
        };
        self.documents
            .get_for(&reader, &key, freshness, deadline, fetch)
            .await
    }

    /// Who a request for the document `key` on `host` is: its effective
    /// credential, and whether it may read a copy another credential
    /// fetched (its credential was accepted by `host` within
    /// `metadata_ttl`, or it presents a valid grant for `key`).
    pub fn reader(
        &self,
        host: &str,
        key: &str,
        forwarded: &Forwarded,
        grant: Option<&str>,
    ) -> Reader {
        let credential_sha256 = self
            .upstream
            .effective_credential(host, forwarded)
            .map(|credential| credential.sha256());
        let accepted = credential_sha256
            .as_deref()
            .is_some_and(|hash| self.accepted.is_accepted(host, hash));
        let granted = grant.is_some_and(|grant| self.grants.verify(key, grant));
        Reader {
            host: host.to_owned(),
            credential_sha256,
            reads_private: accepted || granted,
        }
    }

    /// The grant for `scope` (a document key) to put in tfmirror's URLs
    /// for the files `doc` names, so a client that was given the document
    /// can fetch them without a credential, as Terraform does; `None` when
    /// `doc` is public and its files need none.
    pub fn grant_for(&self, scope: &str, doc: &Document) -> Option<String> {
        doc.credential_sha256
            .as_ref()
            .map(|_| self.grants.issue(scope))
    }
}
