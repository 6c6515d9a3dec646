//! Sending a provider plugin's HTTP requests: the host half of a model round.
//!
//! The plugin describes a request by method and path. The host resolves the
//! path against the base URL in effect (the manifest's, or the operator's
//! override) with a real URL parser and refuses anything that would leave
//! it, sends it only to a host the operator's policy grants the plugin, and
//! adds the granted secret itself (the plugin never sees it, and it is never
//! logged). Only GET and POST, no hop-by-hop or credential headers from the
//! plugin, no redirects, bounded bodies. Transient failures (connection
//! errors, 429, 5xx) are retried a bounded number of times with backoff,
//! honouring `Retry-After`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use url::Url;

use super::reply::Reply;
use crate::plugins::manifest::check_base_url;
use crate::plugins::manifest::url_host;
use crate::plugins::provider::{Completion, HttpRequest, StreamEvent};
use crate::plugins::{Plugin, ProviderEndpoint, Runtime};

/// Attempts per request, the first included.
const MAX_ATTEMPTS: u32 = 3;
/// First backoff; doubled per retry.
const BACKOFF: Duration = Duration::from_millis(250);
/// The longest `Retry-After` honoured; longer ones fail the round instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);
/// The largest response body read, whole or streamed.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// The largest request body a plugin may ask to send.
const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;
/// Headers a plugin may set on one request, and their total size.
const MAX_HEADERS: usize = 32;
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Why a provider round failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{0}")]
    Failed(String),
    /// The provider could not be reached, or answered 429 or 5xx, once the
    /// retries were spent: another provider may answer instead.
    #[error("{0}")]
    Unavailable(String),
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
            // A redirect could lead the key anywhere; a provider API has no
            // need of one.
            .redirect(reqwest::redirect::Policy::none())
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
        if is_transient(response.status()) {
            let body = read_capped(response).await?;
            let detail = match runtime.parse_response(plugin, status, &body).await {
                Err(err) => err.to_string(),
                Ok(_) => format!("it answered {status}"),
            };
            return Err(UpstreamError::Unavailable(detail));
        }
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
        let mut received = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|err| {
                UpstreamError::Failed(format!("the provider's stream broke: {err}"))
            })?;
            received += chunk.len();
            if received > MAX_BODY_BYTES {
                return Err(over_body_limit());
            }
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
        let url = target_url(plugin, endpoint, &request.path)?;
        let method = match request.method.to_ascii_uppercase().as_str() {
            "GET" => reqwest::Method::GET,
            "POST" => reqwest::Method::POST,
            _ => return Err(refused(format!("the method {:?}", request.method))),
        };
        if request.body.len() > MAX_REQUEST_BYTES {
            return Err(refused(format!(
                "a {} byte request body (the limit is {MAX_REQUEST_BYTES})",
                request.body.len()
            )));
        }
        let mut headers = plugin_headers(&request.headers, endpoint.api_key_header.as_deref())?;
        // The provider's spans join the turn's trace.
        crate::telemetry::propagate(&mut headers);
        // Sent only to the URL checked above: a granted host, under the base path.
        let api_key = endpoint
            .api_key_secret
            .as_deref()
            .and_then(|name| plugin.grant.secret(name));

        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut builder = self
                .client
                .request(method.clone(), url.clone())
                .headers(headers.clone())
                .body(request.body.clone());
            if let Some(key) = &api_key {
                builder = match &endpoint.api_key_header {
                    None => builder.bearer_auth(key),
                    Some(header) => {
                        let mut value = HeaderValue::try_from(key.as_str()).map_err(|_| {
                            UpstreamError::Failed(
                                "the provider's secret is not a valid header value".into(),
                            )
                        })?;
                        value.set_sensitive(true);
                        builder.header(header.as_str(), value)
                    }
                };
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
                        UpstreamError::Unavailable(format!(
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

fn refused(what: String) -> UpstreamError {
    UpstreamError::Failed(format!(
        "the provider plugin asked for {what}, which is refused"
    ))
}

fn over_body_limit() -> UpstreamError {
    UpstreamError::Failed(format!(
        "the provider's answer is over {MAX_BODY_BYTES} bytes"
    ))
}

/// Where `plugin`'s request for `path` goes: the path resolved against the
/// base URL in effect, on a host the policy grants the plugin (the
/// operator's override of the base URL is a grant of its own).
fn target_url(
    plugin: &Plugin,
    endpoint: &ProviderEndpoint,
    path: &str,
) -> Result<Url, UpstreamError> {
    let overridden = plugin.grant.base_url_override();
    let base = check_base_url(overridden.as_deref().unwrap_or(&endpoint.base_url))
        .map_err(|err| UpstreamError::Failed(format!("the provider's base URL: {err}")))?;
    let host = url_host(&base).unwrap_or_default();
    if overridden.is_none() && !plugin.grant.hosts.contains(&host) {
        return Err(UpstreamError::Failed(format!(
            "provider {} is not granted the host {host}",
            plugin.name()
        )));
    }
    join_url(&base, path)
}

/// `path` (with an optional query) under `base`, or an error if a URL
/// parser would take it anywhere else. What parsers rewrite (dot segments,
/// encoded dots and slashes, tabs and newlines they strip, backslashes) is
/// refused before parsing, and the parsed result is checked again.
fn join_url(base: &Url, path: &str) -> Result<Url, UpstreamError> {
    let lower = path.to_ascii_lowercase();
    let route = lower.split(['?', '#']).next().unwrap_or_default();
    let suspicious = !path.starts_with('/')
        || path.starts_with("//")
        || path.len() > 2048
        || path
            .bytes()
            .any(|b| b.is_ascii_control() || !b.is_ascii() || b" \\@#".contains(&b))
        || ["%2e", "%2f", "%5c", "%00", "%25"]
            .iter()
            .any(|encoded| route.contains(encoded))
        || route
            .split('/')
            .any(|segment| segment == "." || segment == "..");
    if suspicious {
        return Err(refused(format!("the path {path:?}")));
    }
    let base_path = base.path().trim_end_matches('/');
    let mut joined = base.clone();
    joined.set_query(None);
    let joined = Url::parse(&format!("{}{path}", joined.as_str().trim_end_matches('/')))
        .map_err(|_| refused(format!("the path {path:?}")))?;
    let stays = joined.scheme() == base.scheme()
        && joined.host_str() == base.host_str()
        && joined.port_or_known_default() == base.port_or_known_default()
        && joined.username().is_empty()
        && joined.password().is_none()
        && joined.fragment().is_none()
        && joined
            .path()
            .strip_prefix(base_path)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    if !stays {
        return Err(refused(format!("the path {path:?}")));
    }
    Ok(joined)
}

/// The plugin's headers, without what the host owns: framing and hop-by-hop
/// headers, credentials (the secret's own header, `secret_header`, among
/// them), and where the request came from.
fn plugin_headers(
    headers: &[(String, String)],
    secret_header: Option<&str>,
) -> Result<HeaderMap, UpstreamError> {
    let total: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    if headers.len() > MAX_HEADERS || total > MAX_HEADER_BYTES {
        return Err(refused(format!(
            "{} headers of {total} bytes (the limits are {MAX_HEADERS} and {MAX_HEADER_BYTES})",
            headers.len()
        )));
    }
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) else {
            return Err(refused(format!("the header {name:?}")));
        };
        let host_owned = matches!(
            name.as_str(),
            "authorization"
                | "proxy-authorization"
                | "cookie"
                | "x-api-key"
                | "api-key"
                | "host"
                | "content-length"
                | "transfer-encoding"
                | "connection"
                | "keep-alive"
                | "te"
                | "trailer"
                | "upgrade"
                | "expect"
                | "forwarded"
        ) || name.as_str().starts_with("proxy-")
            || name.as_str().starts_with("x-forwarded-")
            || Some(name.as_str()) == secret_header;
        if !host_owned {
            map.append(name, value);
        }
    }
    Ok(map)
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
            return Err(over_body_limit());
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
    use super::{Url, join_url, plugin_headers};

    #[test]
    fn paths_stay_under_the_base_url() {
        let base = Url::parse("https://api.example.com/v1").unwrap();
        let join = |path: &str| join_url(&base, path).map(|url| url.to_string());
        assert_eq!(
            join("/chat/completions").unwrap(),
            "https://api.example.com/v1/chat/completions"
        );
        assert_eq!(
            join("/models?limit=2").unwrap(),
            "https://api.example.com/v1/models?limit=2"
        );
        let slash = Url::parse("http://127.0.0.1:9/v1/").unwrap();
        assert_eq!(
            join_url(&slash, "/x").unwrap().as_str(),
            "http://127.0.0.1:9/v1/x"
        );
        for path in [
            "chat",
            "/../admin",
            "/%2e%2e/%2e%2e/admin/secret",
            "/.%2e/admin",
            "/%2E%2E/admin",
            "/.\t./admin",
            "/.\n./admin",
            "/.\r./admin",
            "/a/%2f/b",
            "/a%5c..%5cadmin",
            "/%252e%252e/admin",
            "/./x",
            "//evil.com/x",
            "/x@evil.com",
            "http://evil.com/",
            "/a\\b",
            "/a#frag",
            "/caf\u{e9}",
        ] {
            assert!(join(path).is_err(), "{path:?} was allowed");
        }
        // The base path is a prefix by segment, not by characters.
        let base = Url::parse("https://api.example.com/v1").unwrap();
        assert!(join_url(&base, "1/x").is_err());
    }

    #[test]
    fn plugins_set_no_framing_or_credential_headers() {
        let headers = plugin_headers(
            &[
                ("content-type".into(), "application/json".into()),
                ("Transfer-Encoding".into(), "chunked".into()),
                ("Connection".into(), "close".into()),
                ("Proxy-Authorization".into(), "Basic eA==".into()),
                ("authorization".into(), "Bearer stolen".into()),
                ("x-forwarded-for".into(), "1.2.3.4".into()),
                ("x-goog-api-key".into(), "stolen".into()),
            ],
            Some("x-goog-api-key"),
        )
        .unwrap();
        assert_eq!(
            headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["content-type"]
        );
        assert!(plugin_headers(&[("bad header".into(), "x".into())], None).is_err());
        assert!(plugin_headers(&[("x".into(), "a\nb".into())], None).is_err());
        let many: Vec<_> = (0..33).map(|i| (format!("x-{i}"), "v".into())).collect();
        assert!(plugin_headers(&many, None).is_err());
    }
}
