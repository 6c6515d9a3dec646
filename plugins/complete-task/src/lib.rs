//! `complete_task`: marks one of the calling user's tasks completed.

use serde::{Deserialize, Serialize};
use wasmgate_sdk::tasks;
use wasmgate_sdk::{Tool, ToolError};

struct CompleteTask;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    task_id: i64,
}

#[derive(Serialize)]
struct Completed {
    task_id: i64,
    status: &'static str,
    title: String,
}

impl Tool for CompleteTask {
    const NAME: &'static str = "complete_task";
    const DESCRIPTION: &'static str = "Mark a task as completed, by its id.";
    const INPUT_SCHEMA: &'static str = r#"{
        "type": "object",
        "properties": {"task_id": {"type": "integer", "minimum": 1}},
        "required": ["task_id"],
        "additionalProperties": false
    }"#;
    type Args = Args;
    type Output = Completed;

    fn call(args: Args) -> Result<Completed, ToolError> {
        let task = tasks::complete(args.task_id)?;
        Ok(Completed {
            task_id: task.id,
            status: "completed",
            title: task.title,
        })
    }
}

wasmgate_sdk::export_tools!(CompleteTask);
