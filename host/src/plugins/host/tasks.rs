//! `wasmgate:plugin/tasks`: the calling user's tasks, for plugins granted the
//! `tasks` capability.
//!
//! The user is bound by the host when the call starts (from the caller's
//! token); nothing in the interface can name another one. Errors a guest
//! can act on (not found, invalid) are WIT `result` errors; a database
//! failure is `unavailable` and its cause stays in the host's log.

use std::sync::Arc;

use crate::plugins::bindings::tool::wasmgate::plugin::tasks as wit;
use crate::tasks::{NewTask, StatusFilter, Task, TaskError, TaskPatch, TaskRepository};

pub struct TasksHost {
    /// The user this call acts for.
    user: String,
    repository: Option<Arc<dyn TaskRepository>>,
}

impl TasksHost {
    pub fn new(user: String, repository: Option<Arc<dyn TaskRepository>>) -> Self {
        TasksHost { user, repository }
    }

    fn repository(&self) -> Result<&dyn TaskRepository, wit::TaskError> {
        self.repository
            .as_deref()
            .ok_or_else(|| wit::TaskError::Unavailable("no task store is configured".into()))
    }
}

impl wit::Host for TasksHost {
    async fn add(&mut self, task: wit::NewTask) -> Result<wit::Task, wit::TaskError> {
        let new = NewTask {
            title: task.title,
            description: task.description,
        };
        convert(self.repository()?.add(&self.user, new).await)
    }

    async fn list(&mut self, filter: wit::StatusFilter) -> Result<Vec<wit::Task>, wit::TaskError> {
        let filter = match filter {
            wit::StatusFilter::All => StatusFilter::All,
            wit::StatusFilter::Pending => StatusFilter::Pending,
            wit::StatusFilter::Completed => StatusFilter::Completed,
        };
        let tasks = self.repository()?.list(&self.user, filter).await;
        tasks
            .map(|tasks| tasks.into_iter().map(to_wit).collect())
            .map_err(error_to_wit)
    }

    async fn get(&mut self, id: i64) -> Result<wit::Task, wit::TaskError> {
        convert(self.repository()?.get(&self.user, id).await)
    }

    async fn update(
        &mut self,
        id: i64,
        patch: wit::TaskPatch,
    ) -> Result<wit::Task, wit::TaskError> {
        let patch = TaskPatch {
            title: patch.title,
            description: patch.description,
            completed: patch.completed,
        };
        convert(self.repository()?.update(&self.user, id, patch).await)
    }

    async fn complete(&mut self, id: i64) -> Result<wit::Task, wit::TaskError> {
        let patch = TaskPatch {
            completed: Some(true),
            ..TaskPatch::default()
        };
        convert(self.repository()?.update(&self.user, id, patch).await)
    }

    async fn delete(&mut self, id: i64) -> Result<wit::Task, wit::TaskError> {
        convert(self.repository()?.delete(&self.user, id).await)
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
        TaskError::Unavailable => wit::TaskError::Unavailable(error.to_string()),
    }
}
