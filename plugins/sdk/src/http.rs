//! Outgoing HTTP for tools granted the `http` capability, over the standard
//! `wasi:http/outgoing-handler` (any guest HTTP library for WASI works too).
//!
//! The host sends each request only to the hosts the operator granted the
//! plugin, adds any header the operator binds to a host (a token the tool
//! never sees), and bounds requests per call and body sizes. The host
//! follows no redirects; [`get`] follows them itself, each one a request
//! held to the grant like the first.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use wasip2::io::streams::StreamError;

use super::ToolError;

/// Redirects [`get`] follows.
const MAX_REDIRECTS: usize = 5;

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request failed, as the host or the network said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError(pub String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<HttpError> for ToolError {
    fn from(error: HttpError) -> Self {
        ToolError::Failed(error.0)
    }
}

fn describe(code: ErrorCode) -> HttpError {
    HttpError(match code {
        ErrorCode::HttpRequestDenied => {
            "the host refused the request: this plugin is not granted that host".into()
        }
        ErrorCode::DestinationIpProhibited => {
            "the host refused the request: the name resolves to a non-public address".into()
        }
        ErrorCode::HttpResponseBodySize(_) => "the response is larger than the host allows".into(),
        ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout => {
            "the request timed out".into()
        }
        other => format!("the request failed: {other:?}"),
    })
}

/// `GET url`, following up to five redirects.
pub fn get(url: &str) -> Result<Response, HttpError> {
    let mut url = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let response = request("GET", &url, &[], &[])?;
        let redirect = matches!(response.status, 301 | 302 | 303 | 307 | 308);
        match response.header("location") {
            Some(location) if redirect => url = resolve(&url, location),
            _ => return Ok(response),
        }
    }
    Err(HttpError(format!("more than {MAX_REDIRECTS} redirects")))
}

/// `location` resolved against `base` (absolute, or a path on its origin).
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let origin_end = base
        .find("://")
        .map(|at| at + 3)
        .and_then(|start| base[start..].find('/').map(|p| start + p))
        .unwrap_or(base.len());
    format!("{}{}", &base[..origin_end], location)
}

/// One request: `method` to `url` (`http://` or `https://`) with `headers`
/// and `body`, read whole.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, HttpError> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err(HttpError(format!("{url:?} is not an http(s) URL")));
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let fields = Fields::new();
    for (name, value) in headers {
        fields
            .append(name, value.as_bytes())
            .map_err(|err| HttpError(format!("header {name}: {err:?}")))?;
    }
    let outgoing = OutgoingRequest::new(fields);
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "HEAD" => Method::Head,
        other => Method::Other(other.to_string()),
    };
    let invalid = |what: &str| HttpError(format!("invalid {what} in {url:?}"));
    outgoing
        .set_method(&method)
        .map_err(|()| invalid("method"))?;
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    outgoing
        .set_authority(Some(authority))
        .map_err(|()| invalid("authority"))?;
    outgoing
        .set_path_with_query(Some(path))
        .map_err(|()| invalid("path"))?;
    let outgoing_body = outgoing.body().map_err(|()| invalid("body"))?;

    let future = outgoing_handler::handle(outgoing, None).map_err(describe)?;
    if !body.is_empty() {
        let stream = outgoing_body.write().map_err(|()| invalid("body"))?;
        for chunk in body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|err| HttpError(format!("sending the body: {err:?}")))?;
        }
    }
    OutgoingBody::finish(outgoing_body, None).map_err(describe)?;

    future.subscribe().block();
    let incoming = match future.get() {
        Some(Ok(Ok(incoming))) => incoming,
        Some(Ok(Err(code))) => return Err(describe(code)),
        _ => return Err(HttpError("the response never came".into())),
    };
    let status = incoming.status();
    let headers = incoming
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let body_resource = incoming
        .consume()
        .map_err(|()| HttpError("the body was taken".into()))?;
    let stream = body_resource
        .stream()
        .map_err(|()| HttpError("the body was taken".into()))?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(err) => return Err(HttpError(format!("reading the body: {err:?}"))),
        }
    }
    drop(stream);
    let _ = IncomingBody::finish(body_resource);
    Ok(Response {
        status,
        headers,
        body,
    })
}
