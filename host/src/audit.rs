//! The audit log: one entry per tool call that reaches a plugin, whatever
//! the door (chat, ChatKit, MCP): when, who, which plugin (name, version,
//! sha256), which tool, the arguments with secret-looking values redacted,
//! the outcome, the duration, and the outbound hosts the call contacted.
//!
//! [`Audit::call_tool`] is the one way the doors call tools, so no door can
//! forget it. Entries go to a bounded queue and a background writer stores
//! them (a full queue drops entries with a warning rather than slow calls
//! down), optionally also as JSON lines on stdout for log shippers, and
//! deletes entries past the retention period.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::plugins::{CallError, Plugin, Runtime};
use crate::store::Store;

/// The door a call came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Door {
    Chat,
    ChatKit,
    Mcp,
}

impl Door {
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Chat => "chat",
            Door::ChatKit => "chatkit",
            Door::Mcp => "mcp",
        }
    }
}

/// One recorded tool call.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Set by the store (0 until stored).
    pub id: i64,
    /// RFC 3339, UTC.
    pub at: String,
    pub user: String,
    pub door: String,
    pub plugin: String,
    pub version: String,
    pub sha256: String,
    pub tool: String,
    /// The arguments, redacted and bounded (see [`redact`]).
    pub arguments: Value,
    /// `ok`, or the kind of failure (`invalid_arguments`, `not_found`,
    /// `failed`, `deadline_exceeded`, `memory_limit`, …).
    pub outcome: String,
    pub duration_us: i64,
    /// `host:port` of every outbound request the call made (`http`).
    pub hosts: Vec<String>,
}

/// Entries waiting for the writer; past it, new ones are dropped.
const QUEUE: usize = 10_000;
/// How often entries past the retention period are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub struct Audit {
    /// Taken at shutdown, so the writer can drain what is queued and end.
    queue: std::sync::Mutex<Option<mpsc::Sender<AuditEntry>>>,
    writer: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// How long shutdown waits for queued entries to be stored.
const DRAIN_AT_SHUTDOWN: Duration = Duration::from_secs(5);

/// Where audit entries go, and for how long they are kept.
pub struct AuditConfig {
    /// Days an entry is kept; 0 disables the audit log.
    pub retention_days: u32,
    /// Also print each entry as a JSON line on stdout.
    pub stdout: bool,
}

impl Audit {
    /// An audit log writing to `store` in the background.
    pub fn start(store: Store, config: AuditConfig) -> Audit {
        if config.retention_days == 0 {
            return Audit::disabled();
        }
        let (queue, entries) = mpsc::channel(QUEUE);
        let writer = tokio::spawn(write(store, entries, config));
        Audit {
            queue: std::sync::Mutex::new(Some(queue)),
            writer: tokio::sync::Mutex::new(Some(writer)),
        }
    }

    /// An audit log that records nothing (tests of other layers, tools).
    pub fn disabled() -> Audit {
        Audit {
            queue: std::sync::Mutex::new(None),
            writer: tokio::sync::Mutex::new(None),
        }
    }

    /// Stops taking entries and waits (a few seconds at most) until the
    /// queued ones are stored: a clean shutdown keeps its last calls' entries.
    pub async fn close(&self) {
        drop(self.queue.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(writer) = self.writer.lock().await.take()
            && tokio::time::timeout(DRAIN_AT_SHUTDOWN, writer)
                .await
                .is_err()
        {
            tracing::warn!("audit entries still queued at shutdown were not stored");
        }
    }

    /// Calls `tool` of `plugin` for `user` and records the call.
    pub async fn call_tool(
        &self,
        runtime: &Runtime,
        plugin: &Arc<Plugin>,
        (user, door): (&str, Door),
        call: ToolInvocation<'_>,
    ) -> Result<Value, CallError> {
        let ToolInvocation {
            tool,
            arguments,
            id,
        } = call;
        let started = Instant::now();
        let span = crate::telemetry::tool_span(tool, id, door.as_str(), arguments);
        let (result, hosts) = runtime
            .call_tool_reporting(plugin, user, tool, arguments)
            .instrument(span.clone())
            .await;
        crate::telemetry::record_tool_result(&span, result.as_ref().map_err(|_| outcome(&result)));
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(queue) = queue {
            let entry = AuditEntry {
                id: 0,
                at: crate::store::now(),
                user: user.to_string(),
                door: door.as_str().to_string(),
                plugin: plugin.name().to_string(),
                version: plugin.manifest.version.clone(),
                sha256: plugin.sha256.clone(),
                tool: tool.to_string(),
                arguments: redact(arguments),
                outcome: outcome(&result).to_string(),
                duration_us: i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX),
                hosts,
            };
            if queue.try_send(entry).is_err() {
                tracing::warn!(tool, "the audit queue is full; an entry was dropped");
            }
        }
        result
    }
}

/// A tool call as a door asks for it.
pub struct ToolInvocation<'a> {
    pub tool: &'a str,
    /// The arguments, a JSON object.
    pub arguments: &'a str,
    /// The model's id for the call, when a chat turn made it.
    pub id: Option<&'a str>,
}

fn outcome(result: &Result<Value, CallError>) -> &'static str {
    use crate::plugins::ToolError;
    match result {
        Ok(_) => "ok",
        Err(CallError::Tool(ToolError::InvalidArguments(_))) => "invalid_arguments",
        Err(CallError::Tool(ToolError::NotFound(_))) => "not_found",
        Err(CallError::Tool(ToolError::UnknownTool(_))) => "unknown_tool",
        Err(CallError::Tool(ToolError::Failed(_))) => "failed",
        Err(other) => other.code(),
    }
}

/// The writer: stores entries as they come, prints them when asked, and
/// prunes old ones.
async fn write(store: Store, mut entries: mpsc::Receiver<AuditEntry>, config: AuditConfig) {
    let retention = Duration::from_secs(u64::from(config.retention_days) * 24 * 3600);
    let mut last_prune: Option<Instant> = None;
    while let Some(entry) = entries.recv().await {
        if config.stdout
            && let Ok(line) = serde_json::to_string(&entry)
        {
            println!("{line}");
        }
        if let Err(err) = store.record_tool_call(&entry).await {
            tracing::warn!(error = ?err, "cannot store an audit entry");
        }
        if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(Instant::now());
            let cutoff = time::OffsetDateTime::now_utc() - retention;
            if let Ok(pruned) = store.prune_tool_calls(cutoff).await
                && pruned > 0
            {
                tracing::info!(pruned, "audit entries past their retention deleted");
            }
        }
    }
}

/// Longest text kept of one argument value.
const MAX_VALUE_CHARS: usize = 200;
/// Most argument keys kept (the rest are counted).
const MAX_KEYS: usize = 32;
const REDACTED: &str = "[redacted]";

/// The arguments as the audit log keeps them: an object's keys, each with
/// its value, except that a value whose key names a secret (`password`,
/// `token`, `api_key`, …) or that looks like a credential (`sk-…`, `ghp_…`,
/// a bearer token, a JWT) is replaced by `"[redacted]"`, and long values
/// are cut. Nested objects are redacted the same way.
pub fn redact(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(value) => redact_value(None, value, 0),
        Err(_) => Value::String(REDACTED.into()),
    }
}

fn redact_value(key: Option<&str>, value: Value, depth: usize) -> Value {
    if key.is_some_and(secret_key) {
        return Value::String(REDACTED.into());
    }
    match value {
        Value::String(text) if looks_like_credential(&text) => Value::String(REDACTED.into()),
        Value::String(text) if text.chars().count() > MAX_VALUE_CHARS => Value::String(
            text.chars()
                .take(MAX_VALUE_CHARS)
                .chain("…".chars())
                .collect(),
        ),
        Value::Object(map) if depth < 4 => {
            let total = map.len();
            let mut kept: serde_json::Map<String, Value> = map
                .into_iter()
                .take(MAX_KEYS)
                .map(|(k, v)| {
                    let v = redact_value(Some(&k), v, depth + 1);
                    (k, v)
                })
                .collect();
            if total > MAX_KEYS {
                kept.insert("…".into(), Value::from(total - MAX_KEYS));
            }
            Value::Object(kept)
        }
        Value::Array(items) if depth < 4 => Value::Array(
            items
                .into_iter()
                .take(MAX_KEYS)
                .map(|v| redact_value(None, v, depth + 1))
                .collect(),
        ),
        Value::Object(_) | Value::Array(_) => Value::String("…".into()),
        other => other,
    }
}

fn secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "api-key",
        "auth",
        "credential",
        "private_key",
        "cookie",
        "session",
    ]
    .iter()
    .any(|word| key.contains(word))
}

fn looks_like_credential(text: &str) -> bool {
    let text = text.trim();
    let prefixes = [
        "sk-",
        "sk_",
        "pk_live_",
        "rk_live_",
        "ghp_",
        "gho_",
        "ghs_",
        "github_pat_",
        "xoxb-",
        "xoxp-",
        "AKIA",
        "AIza",
        "Bearer ",
        "bearer ",
        "Basic ",
    ];
    let jwt = text.starts_with("eyJ") && text.matches('.').count() == 2 && !text.contains(' ');
    jwt || prefixes
        .iter()
        .any(|p| text.starts_with(p) && text.len() >= p.len() + 8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_and_the_rest_kept() {
        let cases = [
            (json!({"title": "Buy milk"}), json!({"title": "Buy milk"})),
            (
                json!({"title": "x", "api_key": "anything", "Password": 123, "user_token": "t"}),
                json!({"title": "x", "api_key": REDACTED, "Password": REDACTED, "user_token": REDACTED}),
            ),
            (
                json!({"note": "sk-abcdefghijklmnop", "header": "Bearer abcdefghijkl", "url": "https://example.com"}),
                json!({"note": REDACTED, "header": REDACTED, "url": "https://example.com"}),
            ),
            (
                json!({"nested": {"secret": "s", "id": 7}, "list": ["ghp_0123456789abcdef", "ok"]}),
                json!({"nested": {"secret": REDACTED, "id": 7}, "list": [REDACTED, "ok"]}),
            ),
            (
                json!({"jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"}),
                json!({"jwt": REDACTED}),
            ),
        ];
        for (input, expect) in cases {
            assert_eq!(redact(&input.to_string()), expect, "{input}");
        }
        let long = redact(&json!({"text": "a".repeat(500)}).to_string());
        assert_eq!(
            long["text"].as_str().unwrap().chars().count(),
            MAX_VALUE_CHARS + 1
        );
        assert_eq!(redact("not json"), json!(REDACTED));
    }
}
