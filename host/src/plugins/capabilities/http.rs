//! `wasi:http/outgoing-handler` for tools granted the `http` capability:
//! the standard interface (so guest HTTP libraries work unchanged), with
//! every request sent by the host under the operator's grant.
//!
//! - Only to the `host:port` pairs the policy grants the plugin, and only
//!   `http`/`https`. Each redirect is a new request the guest makes, so it
//!   is held to the grant too (the host follows none itself).
//! - A name is resolved by the host, and a private, loopback or otherwise
//!   non-public address is refused: an internal address is reachable only
//!   when the grant names it literally (`127.0.0.1:8080`). The connection
//!   goes to the address that was checked, so DNS cannot change it after.
//! - The operator may bind a granted secret to a header for a host; the
//!   host adds it, drops any header of that name the guest set, and
//!   replaces the secret's value in the response (headers and body) before
//!   the guest sees it.
//! - Bounded: requests per call, request and response bodies, and a
//!   timeout; the call's own deadline still applies around all of it.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::plugins::policy::Grant;

/// Requests one call may make.
pub const MAX_REQUESTS_PER_CALL: u32 = 8;
/// Largest request body a guest may send, and response body it may get.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Longest one request may take, unless the guest asks for less.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const REDACTED: &str = "[redacted]";

/// What every call's requests share: one client, whose resolver refuses
/// non-public addresses.
pub struct Outbound {
    client: reqwest::Client,
    /// Requests by (plugin, `host:port`, outcome), for `/metrics`.
    counts: Mutex<std::collections::BTreeMap<(String, String, &'static str), u64>>,
}

impl Outbound {
    pub fn new() -> Outbound {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(PublicOnly)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("the outbound HTTP client builds");
        Outbound {
            client,
            counts: Mutex::default(),
        }
    }

    fn count(&self, plugin: &str, host: &str, outcome: &'static str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts
            .entry((plugin.to_string(), host.to_string(), outcome))
            .or_default() += 1;
    }

    /// Requests so far by plugin, host and outcome (`ok`, `denied`, `failed`).
    pub fn counts(&self) -> Vec<((String, String, &'static str), u64)> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound::new()
    }
}

/// Resolves names to public addresses only.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = addrs.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether `ip` is an address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 198 && (18..20).contains(&b)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80) // link local
        }
    }
}

/// One call's view of the grant: where it may go, what to add, and what
/// it did.
pub struct HttpGate {
    /// `None` for a call that may make no requests.
    outbound: Option<Arc<Outbound>>,
    plugin: Arc<str>,
    grant: Arc<Grant>,
    /// Requests made so far and the hosts they went to.
    report: Arc<Mutex<Contacted>>,
}

/// What a call's requests did, for the audit log.
#[derive(Debug, Default, Clone)]
pub struct Contacted {
    pub requests: u32,
    pub hosts: Vec<String>,
}

impl HttpGate {
    pub fn new(outbound: Arc<Outbound>, plugin: Arc<str>, grant: Arc<Grant>) -> Self {
        HttpGate {
            outbound: Some(outbound),
            plugin,
            grant,
            report: Arc::default(),
        }
    }

    /// For a call that makes no requests (nothing is granted).
    pub fn closed() -> Self {
        HttpGate {
            outbound: None,
            plugin: Arc::from(""),
            grant: Arc::default(),
            report: Arc::default(),
        }
    }

    /// Where this call's requests went, shared with whoever audits it.
    pub fn report(&self) -> Arc<Mutex<Contacted>> {
        self.report.clone()
    }
}

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                    ),
                    HttpError,
                >,
            > + Send,
    > {
        let (outbound, plugin, grant, report) = (
            self.outbound.clone(),
            self.plugin.clone(),
            self.grant.clone(),
            self.report.clone(),
        );
        Box::new(async move {
            let outbound = outbound.ok_or(HttpError::HttpRequestDenied)?;
            let host = target(request.uri()).unwrap_or_default();
            let sent = send(&outbound.client, &plugin, &grant, &report, request, options).await;
            let outcome = match &sent {
                Ok(_) => "ok",
                Err(HttpError::HttpRequestDenied | HttpError::DestinationIpProhibited) => "denied",
                Err(_) => "failed",
            };
            outbound.count(&plugin, &host, outcome);
            let response = sent?;
            Ok((
                response,
                Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// The `host:port` a URI goes to, lowercased.
fn target(uri: &http::Uri) -> Option<String> {
    let host = uri.host()?.to_ascii_lowercase();
    let port = uri.port_u16().or(match uri.scheme_str() {
        Some("http") => Some(80),
        Some("https") => Some(443),
        _ => None,
    })?;
    Some(format!("{host}:{port}"))
}

async fn send(
    client: &reqwest::Client,
    plugin: &str,
    grant: &Grant,
    report: &Mutex<Contacted>,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<http::Response<WasiBody>, HttpError> {
    let Some(host) = target(request.uri()).filter(|host| grant.hosts.contains(host)) else {
        tracing::info!(plugin, uri = %request.uri(), "outbound request to a host not granted");
        return Err(HttpError::HttpRequestDenied);
    };
    {
        let mut report = report.lock().unwrap_or_else(|p| p.into_inner());
        report.requests += 1;
        if report.requests > MAX_REQUESTS_PER_CALL {
            return Err(HttpError::HttpRequestDenied);
        }
        if !report.hosts.contains(&host) {
            report.hosts.push(host.clone());
        }
    }
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, MAX_REQUEST_BYTES)
        .collect()
        .await
        .map_err(|_| HttpError::HttpRequestBodySize(Some(MAX_REQUEST_BYTES as u64)))?
        .to_bytes();

    let injected: Vec<(http::HeaderName, String)> = grant
        .inject
        .iter()
        .filter(|inject| inject.host == host)
        .filter_map(|inject| {
            let name = http::HeaderName::from_bytes(inject.header.as_bytes()).ok()?;
            let secret = grant.secret(&inject.secret)?;
            Some((name, format!("{}{secret}", inject.prefix)))
        })
        .collect();
    let mut headers = parts.headers;
    for (name, _) in &injected {
        headers.remove(name);
    }
    headers.remove(http::header::HOST);
    for (name, value) in &injected {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            headers.insert(name.clone(), value);
        }
    }
    let timeout = options
        .and_then(|o| o.first_byte_timeout.or(o.connect_timeout))
        .map_or(REQUEST_TIMEOUT, |t| t.min(REQUEST_TIMEOUT));
    let sent = client
        .request(parts.method, parts.uri.to_string())
        .headers(headers)
        .body(body)
        .timeout(timeout)
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(err) if err.is_timeout() => return Err(HttpError::ConnectionTimeout),
        Err(err) if err.is_connect() => {
            tracing::info!(plugin, %host, error = %err, "outbound connection failed");
            return Err(if format!("{err:?}").contains("no public address") {
                HttpError::DestinationIpProhibited
            } else {
                HttpError::ConnectionRefused
            });
        }
        Err(err) => {
            tracing::info!(plugin, %host, error = %err, "outbound request failed");
            return Err(HttpError::HttpProtocolError);
        }
    };
    tracing::debug!(plugin, %host, status = response.status().as_u16(), "outbound request");

    let status = response.status();
    let mut headers = response.headers().clone();
    let mut body = read_capped(response).await?;
    // What the host added never reaches the guest, even echoed back.
    for (_, value) in &injected {
        for header in headers.values_mut() {
            if let Ok(text) = header.to_str()
                && text.contains(value.as_str())
                && let Ok(clean) =
                    http::HeaderValue::from_str(&text.replace(value.as_str(), REDACTED))
            {
                *header = clean;
            }
        }
        body = replace_all(&body, value.as_bytes(), REDACTED.as_bytes());
    }
    headers.remove(http::header::CONTENT_LENGTH);
    headers.remove(http::header::TRANSFER_ENCODING);
    let mut builder = http::Response::builder().status(status);
    *builder.headers_mut().expect("a fresh builder") = headers;
    builder
        .body(
            Full::new(Bytes::from(body))
                .map_err(|never: std::convert::Infallible| match never {})
                .boxed_unsync(),
        )
        .map_err(|err| HttpError::InternalError(Some(err.to_string())))
}

/// The response body, refused past [`MAX_RESPONSE_BYTES`].
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, HttpError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Err(HttpError::HttpResponseBodySize(response.content_length()));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(HttpError::HttpResponseBodySize(None));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(err) if err.is_timeout() => return Err(HttpError::ConnectionReadTimeout),
            Err(_) => return Err(HttpError::HttpResponseIncomplete),
        }
    }
}

fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = rest.windows(needle.len()).position(|w| w == needle) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(with);
        rest = &rest[at + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for (ip, public) in [
            ("93.184.216.34", true),
            ("2606:2800:220:1::1", true),
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("0.0.0.0", false),
            ("::1", false),
            ("fd00::1", false),
            ("fe80::1", false),
            ("::ffff:127.0.0.1", false),
        ] {
            assert_eq!(is_public(ip.parse().unwrap()), public, "{ip}");
        }
    }

    #[test]
    fn targets_and_replacements() {
        let uri: http::Uri = "https://API.example.com/x".parse().unwrap();
        assert_eq!(target(&uri).as_deref(), Some("api.example.com:443"));
        let uri: http::Uri = "http://127.0.0.1:8080/".parse().unwrap();
        assert_eq!(target(&uri).as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(
            replace_all(b"a-SECRET-b-SECRET", b"SECRET", b"[x]"),
            b"a-[x]-b-[x]"
        );
    }
}
