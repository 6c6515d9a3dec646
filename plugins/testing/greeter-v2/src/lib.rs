//! Version 2 of the `greet` tool. The hot-reload tests swap this component
//! and its sibling in and out under one manifest and tell them apart by the
//! version in the answer. (No plugin.toml: the tests write their own.)

use serde_json::{Value, json};
use wasmgate_sdk::{Tool, ToolError};

struct Greet;

impl Tool for Greet {
    const NAME: &'static str = "greet";
    const DESCRIPTION: &'static str = "Says hello and which version answered.";
    const INPUT_SCHEMA: &'static str = r#"{"type":"object"}"#;
    type Args = serde::de::IgnoredAny;
    type Output = Value;

    fn call(_: Self::Args) -> Result<Value, ToolError> {
        Ok(json!({ "greeting": "hello", "version": 2 }))
    }
}

wasmgate_sdk::export_tools!(Greet);
