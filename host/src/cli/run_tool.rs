//! `wasmgate plugins run <file.wasm> <tool> [json]`: the plugin author's test
//! harness. Runs one tool of a component under its manifest's limits, with
//! the `tasks` capability backed by an in-memory store (optionally seeded
//! from a JSON file), `kv` by an in-memory map, `http` reaching only the
//! hosts given with `--allow-host` (a local stub), and prints the result or
//! the error.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use async_trait::async_trait;

use crate::kv::{KvError, KvQuota, KvRepository};
use crate::plugins::{AllocatorChoice, Manifest, Runtime, RuntimeOptions};
use crate::tasks::{NewTask, StatusFilter, Task, TaskError, TaskPatch, TaskRepository, UserId};

pub async fn run(
    file: &Path,
    tool: &str,
    arguments: &str,
    tasks: Option<&Path>,
    allow_hosts: &[String],
) -> anyhow::Result<()> {
    let fake = Arc::new(MemoryTasks::default());
    if let Some(path) = tasks {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let titles: Vec<String> =
            serde_json::from_str(&text).context("the tasks file is a JSON list of titles")?;
        for title in titles {
            fake.add(
                "dev",
                NewTask {
                    title,
                    description: None,
                },
            )
            .await?;
        }
    }
    let runtime = Runtime::new(RuntimeOptions {
        allocator: AllocatorChoice::OnDemand,
        cache_dir: None,
        tasks: Some(fake.clone()),
        task_limits: Default::default(),
        kv: Some(Arc::new(MemoryKv::default())),
        compile: Default::default(),
        memory_mib: crate::plugins::budget::DEFAULT_MEMORY_MIB,
    })?;
    let manifest_path = file.with_extension("toml");
    let plugin = if manifest_path.exists() {
        runtime.load_file(&manifest_path).await?
    } else {
        let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let inspection = runtime.inspect(&wasm).await?;
        let manifest = Manifest::parse(&format!(
            "name = \"dev\"\nversion = \"0.0.0\"\nkind = \"{}\"\ncapabilities = [{}]\n",
            inspection.kind.as_str(),
            inspection
                .capabilities
                .iter()
                .map(|c| format!("\"{}\"", c.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .map_err(anyhow::Error::msg)?;
        runtime.load(manifest, &wasm).await?
    };
    // What an operator's policy would grant: here, the hosts named on the
    // command line, nothing else.
    let mut plugin = plugin;
    Arc::make_mut(&mut plugin.grant).hosts = allow_hosts
        .iter()
        .map(|host| crate::plugins::manifest::normalize_host(host).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<_>>()?;
    let result = runtime.call_tool(&plugin, "dev", tool, arguments).await?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    let after = fake.list("dev", StatusFilter::All).await?;
    if !after.is_empty() {
        eprintln!("tasks of user \"dev\" afterwards:");
        for task in after {
            eprintln!(
                "  {} {:?}{}",
                task.id,
                task.title,
                if task.completed { " (completed)" } else { "" }
            );
        }
    }
    Ok(())
}

/// Tasks in memory, for one run of the harness.
#[derive(Default)]
pub struct MemoryTasks {
    tasks: Mutex<Vec<(String, Task)>>,
}

impl MemoryTasks {
    fn with<R>(&self, f: impl FnOnce(&mut Vec<(String, Task)>) -> R) -> R {
        f(&mut self.tasks.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

const NOW: &str = "2026-01-01T00:00:00Z";

#[async_trait]
impl TaskRepository for MemoryTasks {
    async fn add(&self, user: &UserId, new: NewTask) -> Result<Task, TaskError> {
        let new = new.validated()?;
        Ok(self.with(|tasks| {
            let task = Task {
                id: tasks.len() as i64 + 1,
                title: new.title,
                description: new.description,
                completed: false,
                created_at: NOW.into(),
                updated_at: NOW.into(),
            };
            tasks.push((user.to_string(), task.clone()));
            task
        }))
    }

    async fn list(&self, user: &UserId, filter: StatusFilter) -> Result<Vec<Task>, TaskError> {
        Ok(self.with(|tasks| {
            tasks
                .iter()
                .filter(|(owner, task)| {
                    owner == user
                        && match filter {
                            StatusFilter::All => true,
                            StatusFilter::Pending => !task.completed,
                            StatusFilter::Completed => task.completed,
                        }
                })
                .map(|(_, task)| task.clone())
                .collect()
        }))
    }

    async fn get(&self, user: &UserId, id: i64) -> Result<Task, TaskError> {
        self.with(|tasks| {
            tasks
                .iter()
                .find(|(o, t)| o == user && t.id == id)
                .map(|(_, t)| t.clone())
        })
        .ok_or(TaskError::NotFound(id))
    }

    async fn update(&self, user: &UserId, id: i64, patch: TaskPatch) -> Result<Task, TaskError> {
        let patch = patch.validated()?;
        self.with(|tasks| {
            let (_, task) = tasks.iter_mut().find(|(o, t)| o == user && t.id == id)?;
            if let Some(title) = patch.title {
                task.title = title;
            }
            if let Some(description) = patch.description {
                task.description = (!description.is_empty()).then_some(description);
            }
            if let Some(completed) = patch.completed {
                task.completed = completed;
            }
            Some(task.clone())
        })
        .ok_or(TaskError::NotFound(id))
    }

    async fn delete(&self, user: &UserId, id: i64) -> Result<Task, TaskError> {
        self.with(|tasks| {
            let index = tasks.iter().position(|(o, t)| o == user && t.id == id)?;
            Some(tasks.remove(index).1)
        })
        .ok_or(TaskError::NotFound(id))
    }
}

/// Storage in memory, for one run of the harness, with the quota enforced
/// as the store enforces it.
#[derive(Default)]
pub struct MemoryKv {
    entries: Mutex<std::collections::BTreeMap<(String, String, String), Vec<u8>>>,
}

#[async_trait]
impl KvRepository for MemoryKv {
    async fn get(&self, plugin: &str, user: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        Ok(entries
            .get(&(plugin.into(), user.into(), key.into()))
            .cloned())
    }

    async fn set(
        &self,
        plugin: &str,
        user: &str,
        key: &str,
        value: &[u8],
        quota: KvQuota,
    ) -> Result<(), KvError> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let id = (plugin.to_string(), user.to_string(), key.to_string());
        let others = entries
            .iter()
            .filter(|((p, u, k), _)| p == plugin && u == user && k != key);
        let (keys, bytes) = others.fold((0u64, 0u64), |(n, b), (_, v)| (n + 1, b + v.len() as u64));
        let new_key = !entries.contains_key(&id);
        if (new_key && keys >= u64::from(quota.max_keys))
            || bytes + value.len() as u64 > quota.max_bytes
        {
            return Err(KvError::Quota(quota));
        }
        entries.insert(id, value.to_vec());
        Ok(())
    }

    async fn delete(&self, plugin: &str, user: &str, key: &str) -> Result<bool, KvError> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        Ok(entries
            .remove(&(plugin.into(), user.into(), key.into()))
            .is_some())
    }

    async fn list_keys(
        &self,
        plugin: &str,
        user: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, KvError> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        Ok(entries
            .keys()
            .filter(|(p, u, k)| {
                p == plugin
                    && u == user
                    && k.starts_with(prefix)
                    && after.is_none_or(|a| k.as_str() > a)
            })
            .map(|(_, _, k)| k.clone())
            .take(limit as usize)
            .collect())
    }
}
