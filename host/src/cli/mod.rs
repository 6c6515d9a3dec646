//! The subcommands besides `serve`: plugin author and operator tools.

pub mod check;
pub mod grant;
pub mod new_plugin;
pub mod push;
pub mod run_tool;
pub mod sign;
