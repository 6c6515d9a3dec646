//! Host implementations of the interfaces plugins import: one file per
//! capability, each on its own small context inside [`CallState`].
//!
//! [`CallState`]: super::state::CallState

pub mod config;
pub mod http;
pub mod kv;
pub mod log;
pub mod stdio;
pub mod tasks;

/// The capability contexts one call is bound to: whose tasks and whose
/// storage it reaches, and the plugin's settings. A call that acts for
/// nobody (`list-tools`, providers, an instance made ahead) gets
/// [`Bound::nobody`], where every user-bound function says so.
pub struct Bound {
    pub tasks: tasks::TasksHost,
    pub kv: kv::KvHost,
    pub config: config::ConfigHost,
    pub http: http::HttpGate,
}

impl Bound {
    pub fn nobody() -> Self {
        Bound {
            tasks: tasks::TasksHost::nobody(),
            kv: kv::KvHost::nobody(),
            config: config::ConfigHost::default(),
            http: http::HttpGate::closed(),
        }
    }
}
