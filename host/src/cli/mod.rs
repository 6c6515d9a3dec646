//! The subcommands besides `serve`: plugin author tools.

pub mod check;
pub mod new_plugin;
pub mod run_tool;
