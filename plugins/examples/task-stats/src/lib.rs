//! `task_stats`: a summary of the calling user's tasks. An example of a
//! third-party tool: it reads tasks through the `tasks` capability (granted
//! in plugin.toml) and logs through the host.

use serde::{Deserialize, Serialize};
use wasmgate_sdk::log::{self, Level};
use wasmgate_sdk::tasks::{self, StatusFilter};
use wasmgate_sdk::{Tool, ToolError};

struct TaskStats;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {}

#[derive(Serialize, Debug, PartialEq)]
struct Stats {
    total: usize,
    completed: usize,
    pending: usize,
    /// Whole percent, rounded down; 0 with no tasks.
    percent_done: usize,
    oldest_pending: Option<String>,
}

impl Tool for TaskStats {
    const NAME: &'static str = "task_stats";
    const DESCRIPTION: &'static str = "Summarise the user's tasks: how many there are, how many are done, and the oldest one still open. Use it when the user asks how they are doing.";
    const INPUT_SCHEMA: &'static str = r#"{"type": "object", "additionalProperties": false}"#;
    type Args = Args;
    type Output = Stats;

    fn call(_: Args) -> Result<Stats, ToolError> {
        let all = tasks::list(StatusFilter::All)?;
        let completed = all.iter().filter(|t| t.completed).count();
        let total = all.len();
        let stats = Stats {
            total,
            completed,
            pending: total - completed,
            percent_done: if total == 0 {
                0
            } else {
                completed * 100 / total
            },
            oldest_pending: all.iter().find(|t| !t.completed).map(|t| t.title.clone()),
        };
        log::log(Level::Debug, &format!("summarised {total} tasks"));
        Ok(stats)
    }
}

wasmgate_sdk::export_tools!(TaskStats);
