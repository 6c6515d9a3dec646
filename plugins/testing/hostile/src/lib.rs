//! Test plugin whose tools misbehave: each one attacks one limit of the
//! sandbox (time, memory, traps, output size, ambient authority, state kept
//! between calls). The host
//! must stop each with its own clear error and keep serving everyone else.

use serde::de::IgnoredAny;
use serde_json::{Value, json};
use wasmgate_sdk::{Tool, ToolError};

const NO_ARGS: &str = r#"{"type":"object"}"#;

/// Never returns: only the epoch deadline can stop it.
struct Spin;

impl Tool for Spin {
    const NAME: &'static str = "spin";
    const DESCRIPTION: &'static str = "Loops forever.";
    const INPUT_SCHEMA: &'static str = NO_ARGS;
    type Args = IgnoredAny;
    type Output = ();

    fn call(_: IgnoredAny) -> Result<(), ToolError> {
        let mut counter = 0u64;
        loop {
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }
}

/// Grows memory until something stops it.
struct Hog;

impl Tool for Hog {
    const NAME: &'static str = "hog";
    const DESCRIPTION: &'static str = "Allocates memory without bound.";
    const INPUT_SCHEMA: &'static str = NO_ARGS;
    type Args = IgnoredAny;
    type Output = usize;

    fn call(_: IgnoredAny) -> Result<usize, ToolError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

/// Traps (a Rust panic aborts the instance).
struct Crash;

impl Tool for Crash {
    const NAME: &'static str = "crash";
    const DESCRIPTION: &'static str = "Panics.";
    const INPUT_SCHEMA: &'static str = NO_ARGS;
    type Args = IgnoredAny;
    type Output = ();

    fn call(_: IgnoredAny) -> Result<(), ToolError> {
        panic!("hostile plugin crashed on purpose")
    }
}

/// Returns 50 MB of JSON.
struct Flood;

impl Tool for Flood {
    const NAME: &'static str = "flood";
    const DESCRIPTION: &'static str = "Returns 50 MB of output.";
    const INPUT_SCHEMA: &'static str = NO_ARGS;
    type Args = IgnoredAny;
    type Output = String;

    fn call(_: IgnoredAny) -> Result<String, ToolError> {
        Ok("x".repeat(50 * 1024 * 1024))
    }
}

/// Tries to read a host file and to open a socket through WASI, and reports
/// what happened. The host grants neither, so both must fail.
struct Escape;

impl Tool for Escape {
    const NAME: &'static str = "escape";
    const DESCRIPTION: &'static str = "Tries to read /etc/passwd and connect to 127.0.0.1:5432.";
    const INPUT_SCHEMA: &'static str = NO_ARGS;
    type Args = IgnoredAny;
    type Output = Value;

    fn call(_: IgnoredAny) -> Result<Value, ToolError> {
        let file = match std::fs::read_to_string("/etc/passwd") {
            Ok(text) => json!({ "ok": text.len() }),
            Err(err) => json!({ "error": err.to_string() }),
        };
        let socket = match std::net::TcpStream::connect("127.0.0.1:5432") {
            Ok(_) => json!({ "ok": "connected" }),
            Err(err) => json!({ "error": err.to_string() }),
        };
        let env = std::env::vars().count();
        Ok(json!({ "file": file, "socket": socket, "env_vars": env }))
    }
}

/// Keeps its arguments in a global and returns what an earlier call kept
/// there. Every call gets a fresh instance, so it must always find nothing.
struct Remember;

static KEPT: std::sync::Mutex<Option<Value>> = std::sync::Mutex::new(None);

impl Tool for Remember {
    const NAME: &'static str = "remember";
    const DESCRIPTION: &'static str =
        "Keeps its arguments for the next call and returns the previous call's.";
    const INPUT_SCHEMA: &'static str = NO_ARGS;
    type Args = Value;
    type Output = Value;

    fn call(args: Value) -> Result<Value, ToolError> {
        let mut kept = KEPT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(json!({ "previous": kept.replace(args) }))
    }
}

/// Sleeps (waiting in WASI's clock, not computing) until its deadline:
/// it holds an instance the whole time.
struct Nap;

impl Tool for Nap {
    const NAME: &'static str = "nap";
    const DESCRIPTION: &'static str = "Sleeps for a minute.";
    const INPUT_SCHEMA: &'static str = NO_ARGS;
    type Args = IgnoredAny;
    type Output = ();

    fn call(_: IgnoredAny) -> Result<(), ToolError> {
        std::thread::sleep(std::time::Duration::from_secs(60));
        Ok(())
    }
}

wasmgate_sdk::export_tools!(Spin, Hog, Crash, Flood, Escape, Remember, Nap);
