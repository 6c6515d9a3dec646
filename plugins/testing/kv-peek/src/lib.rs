//! Test plugin: the `kv` capability raw. `kv_peek` reads any key it is
//! told to (the `notes` plugin's among them: it must see nothing of
//! theirs), `kv_put` stores `count` values of `size` bytes under
//! `prefix<n>`, reporting the first error, `kv_keys` lists by prefix.

use serde::Deserialize;
use serde_json::{Value, json};
use wasmgate_sdk::{Tool, ToolError, kv};

struct Peek;

#[derive(Deserialize)]
struct KeyArgs {
    key: String,
}

impl Tool for Peek {
    const NAME: &'static str = "kv_peek";
    const DESCRIPTION: &'static str = "Reads a key.";
    const INPUT_SCHEMA: &'static str =
        r#"{"type":"object","properties":{"key":{"type":"string"}},"required":["key"]}"#;
    type Args = KeyArgs;
    type Output = Value;

    fn call(args: KeyArgs) -> Result<Value, ToolError> {
        Ok(match kv::get(&args.key)? {
            Some(bytes) => json!(String::from_utf8_lossy(&bytes)),
            None => Value::Null,
        })
    }
}

struct Put;

#[derive(Deserialize)]
struct PutArgs {
    prefix: String,
    count: u32,
    size: usize,
}

impl Tool for Put {
    const NAME: &'static str = "kv_put";
    const DESCRIPTION: &'static str = "Stores count values of size bytes.";
    const INPUT_SCHEMA: &'static str = r#"{"type":"object","properties":{"prefix":{"type":"string"},"count":{"type":"integer"},"size":{"type":"integer"}},"required":["prefix","count","size"]}"#;
    type Args = PutArgs;
    type Output = Value;

    fn call(args: PutArgs) -> Result<Value, ToolError> {
        for n in 0..args.count {
            let value = vec![b'x'; args.size];
            if let Err(err) = kv::set(&format!("{}{n}", args.prefix), &value) {
                let (kind, message) = match err {
                    kv::KvError::Invalid(m) => ("invalid", m),
                    kv::KvError::Quota(m) => ("quota", m),
                    kv::KvError::Unavailable(m) => ("unavailable", m),
                };
                return Ok(json!({"stored": n, "error": kind, "message": message}));
            }
        }
        Ok(json!({"stored": args.count}))
    }
}

struct Keys;

#[derive(Deserialize)]
struct PrefixArgs {
    prefix: String,
}

impl Tool for Keys {
    const NAME: &'static str = "kv_keys";
    const DESCRIPTION: &'static str = "Lists keys by prefix.";
    const INPUT_SCHEMA: &'static str =
        r#"{"type":"object","properties":{"prefix":{"type":"string"}},"required":["prefix"]}"#;
    type Args = PrefixArgs;
    type Output = Vec<String>;

    fn call(args: PrefixArgs) -> Result<Vec<String>, ToolError> {
        Ok(wasmgate_sdk::kv_json::keys(&args.prefix)?)
    }
}

wasmgate_sdk::export_tools!(Peek, Put, Keys);
