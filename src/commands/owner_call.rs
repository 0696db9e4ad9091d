//! One way for a tfmirror command to call its server's own JSON endpoints
//! (`POST <owner url>/_tfmirror/...` with the secret as a bearer token),
//! so every caller reads failures the same way.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Health;

/// Why a call's answer cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot ask the server: {0}")]
    Request(#[from] reqwest::Error),
    #[error("the server answered {status}: {message}")]
    Status {
        status: reqwest::StatusCode,
        message: String,
    },
    #[error("the server's answer does not match the request: {0}")]
    Answer(String),
}

impl Health {
    /// POSTs `request` as JSON to `path` (after the owner's URL) and reads
    /// the JSON answer. No timeout: the endpoints that take this route may
    /// download from an upstream first.
    pub async fn post_json<A: DeserializeOwned>(
        &self,
        path: &str,
        request: &impl Serialize,
    ) -> Result<A, CallError> {
        let client = self
            .client(None)
            .map_err(|e| CallError::Answer(e.to_string()))?;
        let body = serde_json::to_vec(request).expect("a request serializes");
        let response = client
            .post(format!("{}/{path}", self.url))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(reqwest::Error::without_url)?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(CallError::Status {
                status,
                message: text.trim().trim_start_matches("tfmirror: ").to_owned(),
            });
        }
        let bytes = response
            .bytes()
            .await
            .map_err(reqwest::Error::without_url)?;
        serde_json::from_slice(&bytes).map_err(|e| CallError::Answer(e.to_string()))
    }
}
