//! Terraform's remote service discovery, read from the real upstream.
//!
//! The generated CLI config overrides discovery for Terraform, so tfmirror
//! is the one that must read `/.well-known/terraform.json` to learn where a
//! host's services really are. Discovery documents are cached like any
//! registry metadata, so a host that is down keeps working from the cache.

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::{Forwarded, Upstream, UserRoutes};
use crate::audit::{Kind, Record};
use crate::config::Config;
use crate::store::{Documents, FetchError};

#[derive(Clone)]
pub struct Discovery {
    config: Arc<Config>,
    upstream: Upstream,
    documents: Documents,
    routes: UserRoutes,
}

impl Discovery {
    pub fn new(config: Arc<Config>, upstream: Upstream, documents: Documents) -> Discovery {
        Discovery {
            config,
            upstream,
            documents,
            routes: UserRoutes::default(),
        }
    }

    /// The user's `host` blocks this discovery honours; the server fills
    /// the table as it starts and as runs begin and end.
    pub fn routes(&self) -> &UserRoutes {
        &self.routes
    }

    /// The base URL of `service` (e.g. `providers.v1`) on `host`, resolved
    /// against the discovery document's own URL as Terraform does.
    pub async fn service_url(
        &self,
        host: &str,
        service: &str,
        forwarded: &Forwarded,
    ) -> Result<Url, FetchError> {
        if let Some(url) = self
            .routes
            .service_url(forwarded.run.as_deref(), host, service)
        {
            return Ok(url);
        }
        let discovery_url = self.config.discovery_url(host);
        let freshness = self.config.metadata_freshness();
        let upstream = self.upstream.clone();
        let fetch_url = discovery_url.clone();
        let credential = self.upstream.effective_credential(host, forwarded).cloned();
        let forwarded = forwarded.clone();
        let key = format!("discovery/{host}");
        let has_fallback = self.documents.cached(&key).is_some();
        let host_name = host.to_owned();
        let served = self
            .documents
            .get(
                &key,
                freshness,
                Duration::from_secs(5),
                // Stored as public whatever credential fetched it: it only
                // names service URLs, and is never served to a client.
                move || async move {
                    let line = Record::new(&forwarded.requester(), Kind::Discovery, host_name)
                        .url(fetch_url.as_str());
                    let (answer, line) = upstream
                        .get_api(
                            &fetch_url,
                            credential.as_ref(),
                            &forwarded,
                            has_fallback,
                            line,
                        )
                        .await?;
                    let parsed = parse(&answer.body)
                        .map(drop)
                        .map_err(|e| FetchError::Unavailable(e.to_string()));
                    upstream.audit().write(match &parsed {
                        Ok(()) => line,
                        Err(e) => line.failed(e),
                    });
                    parsed.map(|()| answer.body)
                },
            )
            .await?;
        let services =
            parse(&served.doc.body).map_err(|e| FetchError::Unavailable(e.to_string()))?;
        let value = services
            .get(service)
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                FetchError::Unavailable(format!("{host} does not offer the {service} service"))
            })?;
        let url = discovery_url.join(value).map_err(|e| {
            FetchError::Unavailable(format!("{host}: {service} URL {value:?}: {e}"))
        })?;
        service_base(url).ok_or_else(|| {
            FetchError::Unavailable(format!("{host}: {service} URL {value:?} is not http(s)"))
        })
    }
}

/// A service URL as the base its API paths go below: http(s) only, and
/// ending in `/` so that a relative path joins under it.
pub(super) fn service_base(mut url: Url) -> Option<Url> {
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Some(url)
}

impl Discovery {
    /// How long an upstream's acceptance of a credential lets it read what
    /// another credential fetched: the metadata freshness time.
    pub(super) fn metadata_ttl(&self) -> Duration {
        self.config.metadata_ttl
    }
}

/// A discovery document that is not a JSON object.
#[derive(Debug, thiserror::Error)]
#[error("the service discovery document is not a JSON object")]
struct NotAnObject;

fn parse(body: &str) -> Result<serde_json::Map<String, serde_json::Value>, NotAnObject> {
    match serde_json::from_str(body) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(NotAnObject),
    }
}
