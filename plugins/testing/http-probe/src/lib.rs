//! Test plugin: `http_fetch {url, method?, body?}` fetches a URL (following
//! redirects as a client library would) and answers everything it can see
//! of the response, or the error, so a test can check that nothing the
//! host added leaks back and that refused requests fail cleanly.

use serde::Deserialize;
use serde_json::{Value, json};
use wasmgate_sdk::{Tool, ToolError, http};

struct Fetch;

#[derive(Deserialize)]
struct Args {
    url: String,
    method: Option<String>,
    body: Option<String>,
}

impl Tool for Fetch {
    const NAME: &'static str = "http_fetch";
    const DESCRIPTION: &'static str = "Fetches a URL and reports the response.";
    const INPUT_SCHEMA: &'static str = r#"{"type":"object","properties":{"url":{"type":"string"},"method":{"type":"string"},"body":{"type":"string"}},"required":["url"]}"#;
    type Args = Args;
    type Output = Value;

    fn call(args: Args) -> Result<Value, ToolError> {
        let response = match args.method.as_deref() {
            None | Some("GET") => http::get(&args.url),
            Some(method) => http::request(
                method,
                &args.url,
                &[("content-type", "text/plain")],
                args.body.unwrap_or_default().as_bytes(),
            ),
        };
        Ok(match response {
            Ok(response) => json!({
                "status": response.status,
                "headers": response.headers,
                "body": String::from_utf8_lossy(&response.body),
            }),
            Err(err) => json!({"error": err.0}),
        })
    }
}

wasmgate_sdk::export_tools!(Fetch);
