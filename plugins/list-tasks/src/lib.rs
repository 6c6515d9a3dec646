//! `list_tasks`: the calling user's tasks, all or by status, oldest first,
//! one page at a time (so it stays usable for a user with 10,000 tasks),
//! with how many there are in all.

use serde::{Deserialize, Serialize};
use wasmgate_sdk::tasks::{self, StatusFilter};
use wasmgate_sdk::{Tool, ToolError};

struct ListTasks;

/// Tasks per page unless the model asks for another number.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 100;

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
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    offset: Option<u64>,
}

#[derive(Serialize)]
struct Listed {
    id: i64,
    title: String,
    description: Option<String>,
    completed: bool,
    created_at: String,
}

#[derive(Serialize)]
struct Page {
    tasks: Vec<Listed>,
    /// All the tasks that match, on every page.
    total: u64,
    offset: u64,
    /// Where the next page starts; `null` on the last one.
    next_offset: Option<u64>,
}

impl Tool for ListTasks {
    const NAME: &'static str = "list_tasks";
    const DESCRIPTION: &'static str = "List the user's tasks: all of them (default), only pending ones, or only completed ones, oldest first, up to `limit` (default 50) from `offset`. The answer says how many there are in all (`total`) and where the next page starts (`next_offset`). Use it to find a task's id before changing it.";
    const INPUT_SCHEMA: &'static str = r#"{
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["all", "pending", "completed"], "default": "all"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50},
            "offset": {"type": "integer", "minimum": 0, "default": 0}
        },
        "additionalProperties": false
    }"#;
    type Args = Args;
    type Output = Page;

    fn call(args: Args) -> Result<Page, ToolError> {
        let filter = match args.status {
            Status::All => StatusFilter::All,
            Status::Pending => StatusFilter::Pending,
            Status::Completed => StatusFilter::Completed,
        };
        let limit = args.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ToolError::InvalidArguments(format!(
                "limit must be 1-{MAX_LIMIT}"
            )));
        }
        let offset = args.offset.unwrap_or(0);
        let page = tasks::list_page(filter, offset, limit)?;
        let end = offset + page.tasks.len() as u64;
        Ok(Page {
            next_offset: (end < page.total).then_some(end),
            total: page.total,
            offset,
            tasks: page
                .tasks
                .into_iter()
                .map(|task| Listed {
                    id: task.id,
                    title: task.title,
                    description: task.description,
                    completed: task.completed,
                    created_at: task.created_at,
                })
                .collect(),
        })
    }
}

wasmgate_sdk::export_tools!(ListTasks);
