//! Test plugin offering one tool, never meant to be called, whose input
//! schema is 40 MB: every tool is sent to the model on every turn, so the
//! host must refuse it at load instead of breaking every chat.

use wasmgate_sdk::bindings::exports::wasmgate::plugin::tool::Guest;
use wasmgate_sdk::{ToolError, ToolSpec};

struct SchemaBomb;

impl Guest for SchemaBomb {
    fn list_tools() -> Vec<ToolSpec> {
        let padding = "x".repeat(40 << 20);
        vec![ToolSpec {
            name: "bomb".into(),
            description: "Never called.".into(),
            input_schema: format!(r#"{{"type":"object","description":"{padding}"}}"#),
        }]
    }

    fn call(_name: String, _arguments: String) -> Result<String, ToolError> {
        Err(ToolError::Failed("never called".into()))
    }
}

wasmgate_sdk::bindings::export!(SchemaBomb with_types_in wasmgate_sdk::bindings);
