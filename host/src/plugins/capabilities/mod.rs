//! Host implementations of the interfaces plugins import: one file per
//! capability, each on its own small context inside [`CallState`].
//!
//! [`CallState`]: super::state::CallState

pub mod log;
pub mod stdio;
pub mod tasks;
