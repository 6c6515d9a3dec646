//! Test plugin with two well-behaved tools: `noop` does nothing (the
//! benchmark's unit of work) and `echo` returns its arguments (what tests use
//! to check that an answer came from the right call).

use serde_json::Value;
use wasmgate_sdk::{Tool, ToolError};

struct Noop;

impl Tool for Noop {
    const NAME: &'static str = "noop";
    const DESCRIPTION: &'static str = "Does nothing and returns an empty object.";
    const INPUT_SCHEMA: &'static str = r#"{"type":"object","additionalProperties":false}"#;
    type Args = serde::de::IgnoredAny;
    type Output = Value;

    fn call(_: Self::Args) -> Result<Value, ToolError> {
        Ok(Value::Object(Default::default()))
    }
}

struct Echo;

impl Tool for Echo {
    const NAME: &'static str = "echo";
    const DESCRIPTION: &'static str = "Returns its arguments unchanged.";
    const INPUT_SCHEMA: &'static str = r#"{"type":"object"}"#;
    type Args = Value;
    type Output = Value;

    fn call(args: Value) -> Result<Value, ToolError> {
        Ok(args)
    }
}

wasmgate_sdk::export_tools!(Noop, Echo);
