//! The `{{tool}}` tool: remembers a value for each user with the `kv`
//! capability (the host keeps it per plugin and user; nothing here names a
//! user). Build with `cargo build --release --target wasm32-wasip2`, then
//! check with `wasmgate plugins check target/wasm32-wasip2/release/{{crate}}.wasm`.

use serde::{Deserialize, Serialize};
use wasmgate_sdk::{Tool, ToolError, kv_json};

struct {{Type}};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    /// What to remember; leave it out to read what was remembered.
    value: Option<String>,
}

#[derive(Serialize)]
struct Output {
    remembered: Option<String>,
    /// How many times this user saved a value.
    saves: u64,
}

#[derive(Serialize, Deserialize, Default)]
struct Stored {
    value: Option<String>,
    saves: u64,
}

impl Tool for {{Type}} {
    const NAME: &'static str = "{{tool}}";
    const DESCRIPTION: &'static str = "Remembers one value for the user, or tells what it remembered. (Describe here, for the model, what the tool does and when to use it.)";
    const INPUT_SCHEMA: &'static str = r#"{
        "type": "object",
        "properties": {"value": {"type": "string", "minLength": 1, "maxLength": 1000}},
        "additionalProperties": false
    }"#;
    type Args = Args;
    type Output = Output;

    fn call(args: Args) -> Result<Output, ToolError> {
        let mut stored: Stored = kv_json::get("state")?.unwrap_or_default();
        if let Some(value) = args.value {
            stored.value = Some(value);
            stored.saves += 1;
            kv_json::set("state", &stored)?;
        }
        Ok(Output { remembered: stored.value, saves: stored.saves })
    }
}

wasmgate_sdk::export_tools!({{Type}});
