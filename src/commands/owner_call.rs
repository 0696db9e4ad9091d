//! The one way a tfmirror command calls its server's own endpoints
//! (`<owner url>/_tfmirror/...` with the secret as a bearer token): typed
//! by the wire types in `protocol`, so every caller builds its request and
//! reads failures the same way.

use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Health;
use crate::protocol::Endpoint;

/// Why a call's answer cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot ask the server: {0}")]
    Request(#[from] reqwest::Error),
    #[error("the server answered {status}: {}", message(text))]
    Status {
        status: reqwest::StatusCode,
        /// The answer's body as sent, trimmed.
        text: String,
    },
    #[error("the server's answer does not match the request: {0}")]
    Answer(String),
}

impl CallError {
    /// The error without this module's framing: the request's own error,
    /// the server's message, or why its answer did not parse.
    pub fn plain(self) -> anyhow::Error {
        match self {
            CallError::Request(e) => e.into(),
            CallError::Status { text, .. } => anyhow::anyhow!("{}", message(&text)),
            CallError::Answer(why) => anyhow::anyhow!(why),
        }
    }
}

/// A tfmirror error body is `tfmirror: <message>`.
fn message(text: &str) -> &str {
    text.trim_start_matches("tfmirror: ")
}

impl Health {
    /// GETs `endpoint` and reads its JSON answer.
    pub async fn get<A: DeserializeOwned>(
        &self,
        endpoint: Endpoint<'_>,
        timeout: Option<Duration>,
    ) -> Result<A, CallError> {
        self.call(Method::GET, endpoint, None, timeout).await
    }

    /// POSTs `request` as JSON to `endpoint` and reads the JSON answer.
    /// Without a timeout for the endpoints that may download from an
    /// upstream first.
    pub async fn post<A: DeserializeOwned>(
        &self,
        endpoint: Endpoint<'_>,
        request: &impl Serialize,
        timeout: Option<Duration>,
    ) -> Result<A, CallError> {
        let body = serde_json::to_vec(request).expect("a request serializes");
        self.call(Method::POST, endpoint, Some(body), timeout).await
    }

    /// DELETEs `endpoint` and reads its JSON answer.
    pub async fn delete<A: DeserializeOwned>(
        &self,
        endpoint: Endpoint<'_>,
        timeout: Option<Duration>,
    ) -> Result<A, CallError> {
        self.call(Method::DELETE, endpoint, None, timeout).await
    }

    /// POSTs `request` as JSON to `endpoint` and gives the successful
    /// answer to read as it arrives (a bundle), without a timeout.
    pub async fn post_for_stream(
        &self,
        endpoint: Endpoint<'_>,
        request: &impl Serialize,
    ) -> Result<reqwest::Response, CallError> {
        let body = serde_json::to_vec(request).expect("a request serializes");
        self.send(Method::POST, endpoint, Some(body), None).await
    }

    /// POSTs `body` as it streams (a bundle file) to `endpoint` and reads
    /// the JSON answer, without a timeout.
    pub async fn post_streamed<A: DeserializeOwned>(
        &self,
        endpoint: Endpoint<'_>,
        body: reqwest::Body,
    ) -> Result<A, CallError> {
        let client = self
            .client(None)
            .map_err(|e| CallError::Answer(e.to_string()))?;
        let request = client
            .post(format!("{}/{}", self.url, endpoint.path()))
            .header(CONTENT_TYPE, "application/zstd")
            .body(body);
        let response = checked(request.send().await.map_err(reqwest::Error::without_url)?).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(reqwest::Error::without_url)?;
        serde_json::from_slice(&bytes).map_err(|e| CallError::Answer(e.to_string()))
    }

    async fn call<A: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: Endpoint<'_>,
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<A, CallError> {
        let response = self.send(method, endpoint, body, timeout).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(reqwest::Error::without_url)?;
        serde_json::from_slice(&bytes).map_err(|e| CallError::Answer(e.to_string()))
    }

    /// The answer to the request, if its status is a success.
    async fn send(
        &self,
        method: Method,
        endpoint: Endpoint<'_>,
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, CallError> {
        let client = self
            .client(timeout)
            .map_err(|e| CallError::Answer(e.to_string()))?;
        let mut request = client.request(method, format!("{}/{}", self.url, endpoint.path()));
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        checked(request.send().await.map_err(reqwest::Error::without_url)?).await
    }
}

/// The answer, if its status is a success.
async fn checked(response: reqwest::Response) -> Result<reqwest::Response, CallError> {
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(CallError::Status {
            status,
            text: text.trim().to_owned(),
        });
    }
    Ok(response)
}
