//! Registry API requests through the metadata cache: find the service's
//! real URL by discovery, fetch below it, check the answer, store it, and
//! serve a copy fetched with a credential only to whom it may belong (see
//! [`super::access`]).

use std::time::Duration;

use url::Url;

use super::access::{AcceptedCredentials, Grants};
use super::{ApiAnswer, Discovery, Forwarded, Upstream};
use crate::audit::{Kind, Record};
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
    /// The path below the service's base URL, one path segment an item
    /// (see [`api_url`]).
    pub path: Vec<String>,
    pub freshness: Freshness,
    /// How long a caller with a cached copy waits for the upstream before
    /// the cached copy is served instead.
    pub deadline: Duration,
    /// The grant the client presented for this document, from one of
    /// tfmirror's URLs (see [`RegistryClient::grant_for`]): it may read a
    /// private copy without a credential.
    pub grant: Option<String>,
    /// What the document is, in Terraform's terms, for the audit line of
    /// its fetch: a version list or download answer, and the provider or
    /// module it belongs to.
    pub what: (Kind, String),
}

/// The URL of a registry API document: `path` below a service's base URL
/// (which discovery ends with `/`). The one builder of registry API URLs;
/// each part becomes one escaped path segment (a `.` or `..` is dropped),
/// so an odd one cannot reach another path, a query or another host. As with a relative reference,
/// the base's query and fragment are dropped. `Err` for a base that cannot
/// have a path (not `http:` or `https:`).
pub fn api_url<S: AsRef<str>>(base: &Url, path: &[S]) -> Option<Url> {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut().ok()?.pop_if_empty().extend(path);
    Some(url)
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
            what: (kind, name),
        } = request;
        let fetch = move || async move {
            let base = discovery.service_url(&host, service, &forwarded).await?;
            let url = api_url(&base, &path).ok_or_else(|| {
                FetchError::Unavailable(format!("cannot build the upstream URL below {base}"))
            })?;
            let line = Record::new(&forwarded.requester(), kind, name).url(url.as_str());
            let (answer, line) = upstream
                .get_api(&url, credential.as_ref(), &forwarded, has_fallback, line)
                .await?;
            if let Some(credential) = &credential {
                accepted.record(&host, &credential.sha256());
            }
            let prepared = prepare(&answer, &url)
                .map_err(|e| FetchError::Unavailable(format!("{url}: malformed answer: {e}")));
            upstream.audit().write(match &prepared {
                Ok(_) => line,
                Err(e) => line.failed(e),
            });
            prepared
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_url_is_the_path_below_the_service() {
        let base = Url::parse("https://registry.example/v1/providers/").unwrap();
        let url = api_url(&base, &["hashicorp", "aws", "versions"]).unwrap();
        assert_eq!(
            url.as_str(),
            "https://registry.example/v1/providers/hashicorp/aws/versions"
        );
        let queried = Url::parse("https://registry.example/api/?x=1#f").unwrap();
        assert_eq!(
            api_url(&queried, &["a"]).unwrap().as_str(),
            "https://registry.example/api/a"
        );
    }

    /// `..` is dropped (the url crate's rule), never climbed; the callers'
    /// parts are path-safe segments that cannot be `..` anyway.
    #[test]
    fn an_odd_part_stays_one_segment() {
        let base = Url::parse("https://registry.example/v1/modules/").unwrap();
        let url = api_url(&base, &["..", "a/b", "?q", "#f", "//evil.example"]).unwrap();
        assert_eq!(
            url.as_str(),
            "https://registry.example/v1/modules/a%2Fb/%3Fq/%23f/%2F%2Fevil.example"
        );
        assert_eq!(url.host_str(), Some("registry.example"));
    }

    #[test]
    fn a_base_without_a_path_has_no_api_url() {
        let base = Url::parse("mailto:someone@example.com").unwrap();
        assert_eq!(api_url(&base, &["a"]), None);
    }
}
