//! End-to-end tests: the real `wasmgate` binary and the real runtime, with
//! real components built from `plugins/` by `cargo xtask build`/`test`.

mod audit;
mod auth;
mod author_kit;
mod browser;
mod chat;
mod chatkit;
mod check;
mod durability;
mod fleet;
#[path = "../harness.rs"]
mod harness;
mod hostile;
mod http;
mod kv;
mod mcp;
mod mcp_conformance;
mod mock_openai;
mod models;
mod oauth;
mod oci;
mod openapi;
mod reload;
mod sandbox;
mod scopes;
mod serve;
mod signatures;
mod support;
mod tasks;
mod traces;
