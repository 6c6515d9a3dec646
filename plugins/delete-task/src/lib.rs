//! `delete_task`: deletes one of the calling user's tasks.

use serde::{Deserialize, Serialize};
use wasmgate_sdk::tasks;
use wasmgate_sdk::{Tool, ToolError};

struct DeleteTask;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    task_id: i64,
}

#[derive(Serialize)]
struct Deleted {
    task_id: i64,
    status: &'static str,
    title: String,
}

impl Tool for DeleteTask {
    const NAME: &'static str = "delete_task";
    const DESCRIPTION: &'static str =
        "Delete a task, by its id. To delete a task by name, list the tasks first to find its id.";
    const INPUT_SCHEMA: &'static str = r#"{
        "type": "object",
        "properties": {"task_id": {"type": "integer", "minimum": 1}},
        "required": ["task_id"],
        "additionalProperties": false
    }"#;
    type Args = Args;
    type Output = Deleted;

    fn call(args: Args) -> Result<Deleted, ToolError> {
        let task = tasks::delete(args.task_id)?;
        Ok(Deleted {
            task_id: task.id,
            status: "deleted",
            title: task.title,
        })
    }
}

wasmgate_sdk::export_tools!(DeleteTask);
