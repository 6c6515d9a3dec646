//! `list_tasks`: the calling user's tasks, all or by status, oldest first.

use serde::{Deserialize, Serialize};
use wasmgate_sdk::tasks::{self, StatusFilter};
use wasmgate_sdk::{Tool, ToolError};

struct ListTasks;

#[derive(Deserialize, Default)]
#[serde(rename_all = "lowercase")]
enum Status {
    #[default]
    All,
    Pending,
    Completed,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    #[serde(default)]
    status: Status,
}

#[derive(Serialize)]
struct Listed {
    id: i64,
    title: String,
    description: Option<String>,
    completed: bool,
    created_at: String,
}

impl Tool for ListTasks {
    const NAME: &'static str = "list_tasks";
    const DESCRIPTION: &'static str = "List the user's tasks: all of them (default), only pending ones, or only completed ones. Use it to find a task's id before changing it.";
    const INPUT_SCHEMA: &'static str = r#"{
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["all", "pending", "completed"], "default": "all"}
        },
        "additionalProperties": false
    }"#;
    type Args = Args;
    type Output = Vec<Listed>;

    fn call(args: Args) -> Result<Vec<Listed>, ToolError> {
        let filter = match args.status {
            Status::All => StatusFilter::All,
            Status::Pending => StatusFilter::Pending,
            Status::Completed => StatusFilter::Completed,
        };
        let tasks = tasks::list(filter)?;
        Ok(tasks
            .into_iter()
            .map(|task| Listed {
                id: task.id,
                title: task.title,
                description: task.description,
                completed: task.completed,
                created_at: task.created_at,
            })
            .collect())
    }
}

wasmgate_sdk::export_tools!(ListTasks);
