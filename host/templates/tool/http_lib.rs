//! The `{{tool}}` tool: fetches a URL with the `http` capability (the host
//! sends the request, only to hosts the operator granted). Build with
//! `cargo build --release --target wasm32-wasip2`, then try it against a
//! local server with `wasmgate plugins run … --allow-host 127.0.0.1:8080`.

use serde::{Deserialize, Serialize};
use wasmgate_sdk::{Tool, ToolError, http};

struct {{Type}};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    url: String,
}

#[derive(Serialize)]
struct Output {
    status: u16,
    bytes: usize,
    content_type: Option<String>,
}

impl Tool for {{Type}} {
    const NAME: &'static str = "{{tool}}";
    const DESCRIPTION: &'static str = "Fetches a URL and tells its status, size and type. (Describe here, for the model, what the tool does and when to use it.)";
    const INPUT_SCHEMA: &'static str = r#"{
        "type": "object",
        "properties": {"url": {"type": "string", "description": "An http(s) URL"}},
        "required": ["url"],
        "additionalProperties": false
    }"#;
    type Args = Args;
    type Output = Output;

    fn call(args: Args) -> Result<Output, ToolError> {
        let response = http::get(&args.url)?;
        Ok(Output {
            status: response.status,
            bytes: response.body.len(),
            content_type: response.header("content-type").map(str::to_string),
        })
    }
}

wasmgate_sdk::export_tools!({{Type}});
