//! `update_task`: changes the title and/or description of one of the calling
//! user's tasks.

use serde::{Deserialize, Serialize};
use wasmgate_sdk::tasks::{self, TaskPatch};
use wasmgate_sdk::{Tool, ToolError};

struct UpdateTask;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    task_id: i64,
    title: Option<String>,
    description: Option<String>,
}

#[derive(Serialize)]
struct Updated {
    task_id: i64,
    status: &'static str,
    title: String,
}

impl Tool for UpdateTask {
    const NAME: &'static str = "update_task";
    const DESCRIPTION: &'static str =
        "Change a task's title and/or description, by its id. An empty description clears it.";
    const INPUT_SCHEMA: &'static str = r#"{
        "type": "object",
        "properties": {
            "task_id": {"type": "integer", "minimum": 1},
            "title": {"type": "string", "minLength": 1, "maxLength": 200},
            "description": {"type": "string", "maxLength": 1000}
        },
        "required": ["task_id"],
        "additionalProperties": false
    }"#;
    type Args = Args;
    type Output = Updated;

    fn call(args: Args) -> Result<Updated, ToolError> {
        if args.title.is_none() && args.description.is_none() {
            return Err(ToolError::InvalidArguments(
                "give a new title or description (or both)".into(),
            ));
        }
        let task = tasks::update(
            args.task_id,
            &TaskPatch {
                title: args.title,
                description: args.description,
                completed: None,
            },
        )?;
        Ok(Updated {
            task_id: task.id,
            status: "updated",
            title: task.title,
        })
    }
}

wasmgate_sdk::export_tools!(UpdateTask);
