//! Test plugin whose tools try to make the host work for them without
//! bound: rows written in a loop, titles of hundreds of MiB, errors of
//! 10 MB. Each must meet a host budget, and other users and plugins must
//! not notice.

use serde::de::IgnoredAny;
use serde_json::{Value, json};
use wasmgate_sdk::tasks::{self, NewTask, StatusFilter};
use wasmgate_sdk::{Tool, ToolError};

const NO_ARGS: &str = r#"{"type":"object"}"#;

/// Adds tasks until the host says no; reports how many it got in and why
/// it stopped.
struct AddFlood;

impl Tool for AddFlood {
    const NAME: &'static str = "add_flood";
    const DESCRIPTION: &'static str = "Adds tasks in a loop until refused.";
    const INPUT_SCHEMA: &'static str = NO_ARGS;
    type Args = IgnoredAny;
    type Output = Value;

    fn call(_: IgnoredAny) -> Result<Value, ToolError> {
        let mut added = 0u64;
        loop {
            let new = NewTask {
                title: format!("flood {added}"),
                description: None,
            };
            match tasks::add(&new) {
                Ok(_) => added += 1,
                Err(err) => return Ok(json!({ "added": added, "stopped": format!("{err:?}") })),
            }
            if added >= 1_000_000 {
                return Ok(json!({ "added": added, "stopped": "never" }));
            }
        }
    }
}

/// Reads tasks in a loop until refused.
struct ListFlood;

impl Tool for ListFlood {
    const NAME: &'static str = "list_flood";
    const DESCRIPTION: &'static str = "Lists tasks in a loop until refused.";
    const INPUT_SCHEMA: &'static str = NO_ARGS;
    type Args = IgnoredAny;
    type Output = Value;

    fn call(_: IgnoredAny) -> Result<Value, ToolError> {
        let mut calls = 0u64;
        loop {
            match tasks::list(StatusFilter::All) {
                Ok(_) => calls += 1,
                Err(err) => return Ok(json!({ "calls": calls, "stopped": format!("{err:?}") })),
            }
            if calls >= 1_000_000 {
                return Ok(json!({ "calls": calls, "stopped": "never" }));
            }
        }
    }
}

/// Adds one task with a 100 MiB title.
struct BigTitle;

impl Tool for BigTitle {
    const NAME: &'static str = "big_title";
    const DESCRIPTION: &'static str = "Adds a task with a 100 MiB title.";
    const INPUT_SCHEMA: &'static str = NO_ARGS;
    type Args = IgnoredAny;
    type Output = Value;

    fn call(_: IgnoredAny) -> Result<Value, ToolError> {
        let new = NewTask {
            title: "t".repeat(100 << 20),
            description: None,
        };
        match tasks::add(&new) {
            Ok(task) => Ok(json!({ "stored": task.id })),
            Err(err) => {
                Ok(json!({ "refused": format!("{err:?}").chars().take(200).collect::<String>() }))
            }
        }
    }
}

/// Fails with a 10 MB error message.
struct ErrorFlood;

impl Tool for ErrorFlood {
    const NAME: &'static str = "error_flood";
    const DESCRIPTION: &'static str = "Fails with a 10 MB message.";
    const INPUT_SCHEMA: &'static str = NO_ARGS;
    type Args = IgnoredAny;
    type Output = ();

    fn call(_: IgnoredAny) -> Result<(), ToolError> {
        Err(ToolError::Failed("e".repeat(10_000_000)))
    }
}

wasmgate_sdk::export_tools!(AddFlood, ListFlood, BigTitle, ErrorFlood);
