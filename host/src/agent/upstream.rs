//! Sending a provider plugin's HTTP requests: the host half of a model round.
//!
//! The plugin describes a request by path; it goes only to the base URL in
//! the plugin's manifest, with the API key from the environment variable the
//! manifest names (the plugin never sees it, and it is never logged).
//! Transient failures (connection errors, 429, 5xx) are retried a bounded
//! number of times with backoff, honouring `Retry-After`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};

use super::reply::Reply;
use crate::plugins::provider::{Completion, HttpRequest, StreamEvent};
use crate::plugins::{Plugin, Runtime};

/// Attempts per request, the first included.
const MAX_ATTEMPTS: u32 = 3;
/// First backoff; doubled per retry.
const BACKOFF: Duration = Duration::from_millis(250);
/// The longest `Retry-After` honoured; longer ones fail the round instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);
/// The largest non-streamed response body read.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Why a provider round failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{0}")]
    Failed(String),
}

pub struct Upstream {
    client: reqwest::Client,
}

impl Upstream {
    pub fn new(read_timeout: Duration) -> Upstream {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(read_timeout)
            .pool_max_idle_per_host(64)
            .build()
            .expect("building a reqwest client with timeouts cannot fail");
        Upstream { client }
    }

    /// Sends `request` for `plugin` and decodes the answer through the
    /// plugin, streaming text deltas to `reply` when `stream` is set.
    pub async fn round(
        &self,
        runtime: &Runtime,
        plugin: &Arc<Plugin>,
        request: HttpRequest,
        stream: bool,
        reply: &Reply<'_>,
    ) -> Result<Completion, UpstreamError> {
        let response = self.send(plugin, &request).await?;
        let status = response.status().as_u16();
        // Some OpenAI-compatible servers answer a streamed request whole, as
        // JSON; decode what the provider sent, not what was asked for (the
        // reply then shows as one delta, see `Reply::finish`).
        if !stream || !is_event_stream(&response) {
            let body = read_capped(response).await?;
            return runtime
                .parse_response(plugin, status, &body)
                .await
                .map_err(|err| UpstreamError::Failed(err.to_string()));
        }

        let guest = |err: crate::plugins::CallError| UpstreamError::Failed(err.to_string());
        let mut decoder = runtime
            .stream_decoder(plugin, status)
            .await
            .map_err(guest)?;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|err| {
                UpstreamError::Failed(format!("the provider's stream broke: {err}"))
            })?;
            for event in decoder.feed(&chunk).await.map_err(guest)? {
                if let StreamEvent::TextDelta(text) = event {
                    reply.delta(text).await;
                }
            }
        }
        decoder.finish().await.map_err(guest)
    }

    async fn send(
        &self,
        plugin: &Plugin,
        request: &HttpRequest,
    ) -> Result<reqwest::Response, UpstreamError> {
        let endpoint = plugin.manifest.provider.as_ref().ok_or_else(|| {
            UpstreamError::Failed(format!(
                "provider {} asked to send a request but its manifest names no endpoint",
                plugin.name()
            ))
        })?;
        let url = join_url(&endpoint.resolved_base_url(), &request.path)?;
        let method: reqwest::Method = request.method.parse().map_err(|_| {
            UpstreamError::Failed(format!("invalid HTTP method {:?}", request.method))
        })?;
        let api_key = endpoint.api_key();

        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut builder = self
                .client
                .request(method.clone(), &url)
                .body(request.body.clone());
            for (name, value) in &request.headers {
                // The host owns authentication and framing headers.
                let (Ok(name), Ok(value)) = (
                    HeaderName::try_from(name.as_str()),
                    HeaderValue::try_from(value.as_str()),
                ) else {
                    continue;
                };
                if !matches!(
                    name.as_str(),
                    "authorization" | "host" | "content-length" | "cookie"
                ) {
                    builder = builder.header(name, value);
                }
            }
            if let Some(key) = &api_key {
                builder = builder.bearer_auth(key);
            }
            let outcome = builder.send().await;
            let retry_in = match &outcome {
                Ok(response) if is_transient(response.status()) => retry_delay(response, attempt),
                Ok(_) => None,
                Err(err) if err.is_connect() || err.is_timeout() => {
                    Some(BACKOFF * 2u32.pow(attempt - 1))
                }
                Err(_) => None,
            };
            match (retry_in, attempt < MAX_ATTEMPTS) {
                (Some(delay), true) => {
                    tracing::warn!(
                        provider = plugin.name(),
                        attempt,
                        ?delay,
                        "provider request failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
                _ => {
                    return outcome.map_err(|err| {
                        UpstreamError::Failed(format!(
                            "cannot reach the provider: {}",
                            without_url(&err)
                        ))
                    });
                }
            }
        }
    }
}

fn is_event_stream(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// How long to wait before the next attempt: `Retry-After` (seconds) if the
/// provider sent one we are willing to honour, else exponential backoff.
fn retry_delay(response: &reqwest::Response, attempt: u32) -> Option<Duration> {
    match response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        Some(seconds) if Duration::from_secs(seconds) <= MAX_RETRY_AFTER => {
            Some(Duration::from_secs(seconds))
        }
        Some(_) => None,
        None => Some(BACKOFF * 2u32.pow(attempt - 1)),
    }
}

/// The plugin's path appended to the configured base URL, refusing anything
/// that could leave it.
fn join_url(base: &str, path: &str) -> Result<String, UpstreamError> {
    let escapes = !path.starts_with('/')
        || path.starts_with("//")
        || path.contains("..")
        || path.contains("://")
        || path.contains('@')
        || path.contains('\\');
    if escapes {
        return Err(UpstreamError::Failed(format!(
            "the provider plugin asked for a disallowed path {path:?}"
        )));
    }
    Ok(format!("{base}{path}"))
}

async fn read_capped(response: reqwest::Response) -> Result<Vec<u8>, UpstreamError> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| {
            UpstreamError::Failed(format!(
                "reading the provider's answer: {}",
                without_url(&err)
            ))
        })?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(UpstreamError::Failed(format!(
                "the provider's answer is over {MAX_BODY_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// reqwest errors name the URL; keep query strings (where some providers
/// put keys) out of messages.
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        let mut shown = url.clone();
        shown.set_query(None);
        text = text.replace(url.as_str(), shown.as_str());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::join_url;

    #[test]
    fn paths_stay_under_the_base_url() {
        let base = "https://api.example.com/v1";
        assert_eq!(
            join_url(base, "/chat/completions").unwrap(),
            "https://api.example.com/v1/chat/completions"
        );
        for path in [
            "chat",
            "/../admin",
            "//evil.com/x",
            "/x@evil.com",
            "http://evil.com/",
            "/a\\b",
        ] {
            assert!(join_url(base, path).is_err(), "{path}");
        }
    }
}
