//! The object store client that `[shared]` names, built the standard way
//! for each cloud: the `from_env` builders read `AWS_*`, `GOOGLE_*` and
//! `AZURE_*` credentials and settings, then the config's keys override
//! them. Nothing here reaches the network.

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use super::SharedError;
use crate::config::SharedConfig;

/// The store and the prefix below which the tier keeps its keys.
pub fn open(config: &SharedConfig) -> Result<(Arc<dyn ObjectStore>, Path), SharedError> {
    crate::crypto_provider::install();
    let url = &config.url;
    let failed = |source| SharedError::Open {
        url: url.to_string(),
        source,
    };
    // The tier bounds every wait itself (a whole 200 MB transfer may not
    // fit a per-request timeout; a stalled one must not wait forever), so
    // the client only bounds connecting, and retries once within the
    // timeout: a failing bucket must cost a run little. No proxy or root
    // certificate is set here: the client then follows HTTPS_PROXY,
    // NO_PROXY, ... and SSL_CERT_FILE like every upstream client (see
    // upstream/network_env.rs); `with_proxy_url` would replace them.
    let client = ClientOptions::new()
        .with_allow_http(config.allow_http)
        .with_connect_timeout(config.timeout)
        .with_timeout_disabled();
    let retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 1,
        retry_timeout: config.timeout,
    };
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" => {
            let mut builder = AmazonS3Builder::from_env()
                .with_url(url.as_str())
                .with_client_options(client)
                .with_retry(retry);
            if let Some(endpoint) = &config.endpoint {
                builder = builder.with_endpoint(endpoint.as_str().trim_end_matches('/'));
            }
            if let Some(region) = &config.region {
                builder = builder.with_region(region);
            }
            if config.allow_http {
                builder = builder.with_allow_http(true);
            }
            Arc::new(builder.build().map_err(failed)?)
        }
        "gs" => {
            let builder = GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .with_client_options(client)
                .with_retry(retry);
            Arc::new(builder.build().map_err(failed)?)
        }
        "az" => {
            let mut builder = MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .with_client_options(client)
                .with_retry(retry);
            if let Some(endpoint) = &config.endpoint {
                builder = builder.with_endpoint(endpoint.as_str().trim_end_matches('/').into());
            }
            if config.allow_http {
                builder = builder.with_allow_http(true);
            }
            Arc::new(builder.build().map_err(failed)?)
        }
        // The whole file system, with the URL's path as the prefix: the
        // directory is made by the first write, not here.
        _ => Arc::new(LocalFileSystem::new()),
    };
    let prefix = Path::from_url_path(url.path()).map_err(|e| failed(e.into()))?;
    Ok((store, prefix))
}
