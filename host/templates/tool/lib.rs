//! The `{{tool}}` tool. Build with
//! `cargo build --release --target wasm32-wasip2`, then check with
//! `wasmgate plugins check target/wasm32-wasip2/release/{{crate}}.wasm`.

use serde::{Deserialize, Serialize};
use wasmgate_sdk::{Tool, ToolError};

struct {{Type}};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    name: String,
}

#[derive(Serialize)]
struct Output {
    greeting: String,
}

impl Tool for {{Type}} {
    const NAME: &'static str = "{{tool}}";
    const DESCRIPTION: &'static str = "Greets someone by name. (Describe here, for the model, what the tool does and when to use it.)";
    const INPUT_SCHEMA: &'static str = r#"{
        "type": "object",
        "properties": {"name": {"type": "string", "minLength": 1}},
        "required": ["name"],
        "additionalProperties": false
    }"#;
    type Args = Args;
    type Output = Output;

    fn call(args: Args) -> Result<Output, ToolError> {
        if args.name.trim().is_empty() {
            return Err(ToolError::InvalidArguments("name must not be empty".into()));
        }
        Ok(Output { greeting: format!("Hello, {}!", args.name.trim()) })
    }
}

wasmgate_sdk::export_tools!({{Type}});
