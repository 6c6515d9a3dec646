//! `add_task`: adds a task for the calling user. The host trims the title and
//! enforces the length rules; a broken rule comes back as an error the model
//! can explain.

use serde::{Deserialize, Serialize};
use wasmgate_sdk::tasks::{self, NewTask};
use wasmgate_sdk::{Tool, ToolError};

struct AddTask;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    title: String,
    description: Option<String>,
}

#[derive(Serialize)]
struct Added {
    task_id: i64,
    status: &'static str,
    title: String,
}

impl Tool for AddTask {
    const NAME: &'static str = "add_task";
    const DESCRIPTION: &'static str = "Add a task to the user's task list. Use a short title in the user's words; put details in the description.";
    const INPUT_SCHEMA: &'static str = r#"{
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": 200, "description": "What to do, e.g. \"Buy groceries\"."},
            "description": {"type": "string", "maxLength": 1000, "description": "Optional details."}
        },
        "required": ["title"],
        "additionalProperties": false
    }"#;
    type Args = Args;
    type Output = Added;

    fn call(args: Args) -> Result<Added, ToolError> {
        let task = tasks::add(&NewTask {
            title: args.title,
            description: args.description,
        })?;
        Ok(Added {
            task_id: task.id,
            status: "created",
            title: task.title,
        })
    }
}

wasmgate_sdk::export_tools!(AddTask);
