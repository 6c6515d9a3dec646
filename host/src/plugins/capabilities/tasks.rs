//! `wasmgate:plugin/tasks`: the calling user's tasks, for plugins granted the
//! `tasks` capability.
//!
//! The user is bound by the host when the call starts (from the caller's
//! token); nothing in the interface can name another one. Errors a guest
//! can act on (not found, invalid) are WIT `result` errors; a database
//! failure is `unavailable` and its cause stays in the host's log.
//!
//! Every call is budgeted: host calls and writes per guest call, writes per
//! user and minute (shared by all plugins), and input sizes checked before
//! anything reaches the store. A spent budget is an `invalid` error the
//! guest can report; the store never sees the excess.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::plugins::bindings::tool::wasmgate::plugin::tasks as wit;
use crate::tasks::{
    MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS, NewTask, StatusFilter, Task, TaskError, TaskPatch,
    TaskRepository,
};

/// What one guest call, and one user across calls, may ask of the store.
#[derive(Debug, Clone)]
pub struct TaskLimits {
    /// Calls into `tasks` per guest call.
    pub host_calls_per_call: u32,
    /// Adds, updates, completions and deletes per guest call.
    pub writes_per_call: u32,
    /// Writes per user and minute, over all plugins; 0 for no limit.
    pub writes_per_user_minute: u32,
    /// Tasks `list` hands a guest at most (oldest first).
    pub listed_per_call: usize,
    /// Tasks one `list-page` hands a guest at most.
    pub page_size: u32,
}

impl Default for TaskLimits {
    fn default() -> Self {
        TaskLimits {
            host_calls_per_call: 64,
            writes_per_call: 16,
            writes_per_user_minute: 600,
            listed_per_call: 1_000,
            page_size: 200,
        }
    }
}

/// The per-user write windows, shared by every call of the runtime.
#[derive(Default)]
pub struct WriteWindows {
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

const WINDOW: Duration = Duration::from_secs(60);

impl WriteWindows {
    /// Counts one write of `user`; false once the minute's budget is spent.
    fn admit(&self, user: &str, per_minute: u32) -> bool {
        if per_minute == 0 {
            return true;
        }
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        // Forget users idle for a window, so the map stays as large as the
        // set of users writing right now.
        if windows.len() > 4096 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let (start, count) = windows.entry(user.to_string()).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            (*start, *count) = (now, 0);
        }
        *count += 1;
        *count <= per_minute
    }
}

pub struct TasksHost {
    /// The user this call acts for, and their tasks; `None` for a call
    /// that acts for nobody (`list-tools`, providers, a ready instance).
    caller: Option<Caller>,
    limits: Arc<TaskLimits>,
    windows: Arc<WriteWindows>,
    host_calls: u32,
    writes: u32,
}

struct Caller {
    user: String,
    repository: Arc<dyn TaskRepository>,
}

impl TasksHost {
    /// For a call that acts for `user`, on `repository` (none: the host
    /// has no task store, and every call says so).
    pub fn for_user(
        user: String,
        repository: Option<Arc<dyn TaskRepository>>,
        limits: Arc<TaskLimits>,
        windows: Arc<WriteWindows>,
    ) -> Self {
        TasksHost {
            caller: repository.map(|repository| Caller { user, repository }),
            limits,
            windows,
            host_calls: 0,
            writes: 0,
        }
    }

    /// For a call that acts for nobody.
    pub fn nobody() -> Self {
        TasksHost {
            caller: None,
            limits: Default::default(),
            windows: Default::default(),
            host_calls: 0,
            writes: 0,
        }
    }

    /// Counts one host call (a write when `write`) against the budgets.
    fn charge(&mut self, write: bool) -> Result<(), wit::TaskError> {
        self.host_calls += 1;
        if self.host_calls > self.limits.host_calls_per_call {
            return Err(wit::TaskError::Invalid(format!(
                "this call has made its {} task calls",
                self.limits.host_calls_per_call
            )));
        }
        if !write {
            return Ok(());
        }
        self.writes += 1;
        if self.writes > self.limits.writes_per_call {
            return Err(wit::TaskError::Invalid(format!(
                "this call has made its {} changes to tasks",
                self.limits.writes_per_call
            )));
        }
        let user = self.caller()?.0;
        if !self.windows.admit(user, self.limits.writes_per_user_minute) {
            return Err(wit::TaskError::Invalid(format!(
                "this user has made {} changes to tasks in the last minute; try again shortly",
                self.limits.writes_per_user_minute
            )));
        }
        Ok(())
    }

    /// The user and their tasks; unavailable for a call that acts for nobody.
    fn caller(&self) -> Result<(&str, &dyn TaskRepository), wit::TaskError> {
        self.caller
            .as_ref()
            .map(|c| (c.user.as_str(), &*c.repository))
            .ok_or_else(|| wit::TaskError::Unavailable("this call acts for no user".into()))
    }
}

/// Refuses text over a rule's length by its byte size alone (a character
/// is at most four bytes), before any copy or count of it.
fn check_len(field: &str, text: Option<&str>, max_chars: usize) -> Result<(), wit::TaskError> {
    match text {
        Some(text) if text.len() > max_chars * 4 => Err(wit::TaskError::Invalid(format!(
            "{field} must be at most {max_chars} characters"
        ))),
        _ => Ok(()),
    }
}

impl wit::Host for TasksHost {
    async fn add(&mut self, task: wit::NewTask) -> Result<wit::Task, wit::TaskError> {
        check_len("title", Some(&task.title), MAX_TITLE_CHARS)?;
        check_len(
            "description",
            task.description.as_deref(),
            MAX_DESCRIPTION_CHARS,
        )?;
        self.charge(true)?;
        let new = NewTask {
            title: task.title,
            description: task.description,
        };
        let (user, tasks) = self.caller()?;
        convert(tasks.add(user, new).await)
    }

    async fn list(&mut self, filter: wit::StatusFilter) -> Result<Vec<wit::Task>, wit::TaskError> {
        self.charge(false)?;
        let listed = self.limits.listed_per_call;
        let (user, tasks) = self.caller()?;
        tasks
            .list(user, from_wit_filter(filter))
            .await
            .map(|tasks| tasks.into_iter().take(listed).map(to_wit).collect())
            .map_err(error_to_wit)
    }

    async fn list_page(
        &mut self,
        filter: wit::StatusFilter,
        offset: u64,
        limit: u32,
    ) -> Result<wit::TaskPage, wit::TaskError> {
        self.charge(false)?;
        let limit = limit.min(self.limits.page_size);
        let (user, tasks) = self.caller()?;
        let page = tasks
            .list_page(user, from_wit_filter(filter), offset, limit)
            .await
            .map_err(error_to_wit)?;
        Ok(wit::TaskPage {
            tasks: page.tasks.into_iter().map(to_wit).collect(),
            total: page.total,
        })
    }

    async fn get(&mut self, id: i64) -> Result<wit::Task, wit::TaskError> {
        self.charge(false)?;
        let (user, tasks) = self.caller()?;
        convert(tasks.get(user, id).await)
    }

    async fn update(
        &mut self,
        id: i64,
        patch: wit::TaskPatch,
    ) -> Result<wit::Task, wit::TaskError> {
        check_len("title", patch.title.as_deref(), MAX_TITLE_CHARS)?;
        check_len(
            "description",
            patch.description.as_deref(),
            MAX_DESCRIPTION_CHARS,
        )?;
        self.charge(true)?;
        let patch = TaskPatch {
            title: patch.title,
            description: patch.description,
            completed: patch.completed,
        };
        let (user, tasks) = self.caller()?;
        convert(tasks.update(user, id, patch).await)
    }

    async fn complete(&mut self, id: i64) -> Result<wit::Task, wit::TaskError> {
        self.charge(true)?;
        let patch = TaskPatch {
            completed: Some(true),
            ..TaskPatch::default()
        };
        let (user, tasks) = self.caller()?;
        convert(tasks.update(user, id, patch).await)
    }

    async fn delete(&mut self, id: i64) -> Result<wit::Task, wit::TaskError> {
        self.charge(true)?;
        let (user, tasks) = self.caller()?;
        convert(tasks.delete(user, id).await)
    }
}

fn from_wit_filter(filter: wit::StatusFilter) -> StatusFilter {
    match filter {
        wit::StatusFilter::All => StatusFilter::All,
        wit::StatusFilter::Pending => StatusFilter::Pending,
        wit::StatusFilter::Completed => StatusFilter::Completed,
    }
}

fn convert(result: Result<Task, TaskError>) -> Result<wit::Task, wit::TaskError> {
    result.map(to_wit).map_err(error_to_wit)
}

fn to_wit(task: Task) -> wit::Task {
    wit::Task {
        id: task.id,
        title: task.title,
        description: task.description,
        completed: task.completed,
        created_at: task.created_at,
        updated_at: task.updated_at,
    }
}

fn error_to_wit(error: TaskError) -> wit::TaskError {
    match error {
        TaskError::NotFound(id) => wit::TaskError::NotFound(id),
        TaskError::Invalid(message) => wit::TaskError::Invalid(message),
        TaskError::Quota(_) => wit::TaskError::Invalid(error.to_string()),
        TaskError::Unavailable => wit::TaskError::Unavailable(error.to_string()),
    }
}
