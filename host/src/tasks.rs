//! Tasks, the product's core data: the types, the rules a task must keep, and
//! the repository interface the store implements.
//!
//! Both doors to tasks, the REST API and the `tasks` capability of tool
//! plugins, go through [`TaskRepository`], so a rule enforced here holds for
//! both. Every method takes the user it acts for; nothing can reach a task
//! of another user, whose ids behave exactly like ids that do not exist.

use async_trait::async_trait;

/// The authenticated user a request or a plugin call acts for.
pub type UserId = str;

/// The OAuth scopes of reading and of changing tasks: the REST task routes
/// need them, and the stock tools declare them in their manifests.
pub const TASKS_READ: &str = "tasks:read";
pub const TASKS_WRITE: &str = "tasks:write";

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: i64,
    pub title: String,
    pub description: Option<String>,
    pub completed: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone)]
pub struct NewTask {
    pub title: String,
    pub description: Option<String>,
}

/// Fields to change; `None` leaves a field as it is. An empty description
/// clears it.
#[derive(Debug, Clone, Default)]
pub struct TaskPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub completed: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatusFilter {
    #[default]
    All,
    Pending,
    Completed,
}

impl StatusFilter {
    pub fn parse(text: &str) -> Option<StatusFilter> {
        match text {
            "all" => Some(StatusFilter::All),
            "pending" => Some(StatusFilter::Pending),
            "completed" => Some(StatusFilter::Completed),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("task {0} not found")]
    NotFound(i64),
    #[error("{0}")]
    Invalid(String),
    /// The user holds as many tasks as the operator allows.
    #[error("the limit of {0} tasks is reached; complete and delete some first")]
    Quota(i64),
    /// The database failed; the cause is logged where it happened.
    #[error("the task store is unavailable")]
    Unavailable,
}

impl NewTask {
    /// Trims the title and checks both fields.
    pub fn validated(self) -> Result<NewTask, TaskError> {
        Ok(NewTask {
            title: valid_title(&self.title)?,
            description: valid_description(self.description)?,
        })
    }
}

impl TaskPatch {
    /// Trims the title and checks the fields present.
    pub fn validated(self) -> Result<TaskPatch, TaskError> {
        Ok(TaskPatch {
            title: self.title.as_deref().map(valid_title).transpose()?,
            description: valid_description(self.description)?,
            completed: self.completed,
        })
    }
}

/// The first character no stored text may hold: a C0 control other than
/// tab, newline and carriage return, or DEL. (PostgreSQL refuses NUL in
/// text; no backend should hold what one of them cannot.)
pub fn disallowed_char(text: &str) -> Option<char> {
    text.chars()
        .find(|&c| (c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{7f}')
}

fn check_chars(field: &str, text: &str) -> Result<(), TaskError> {
    match disallowed_char(text) {
        Some(c) => Err(TaskError::Invalid(format!(
            "{field} must not contain the control character U+{:04X}",
            c as u32
        ))),
        None => Ok(()),
    }
}

fn valid_title(title: &str) -> Result<String, TaskError> {
    check_chars("title", title)?;
    let title = title.trim();
    let chars = title.chars().count();
    if chars == 0 || chars > MAX_TITLE_CHARS {
        return Err(TaskError::Invalid(format!(
            "title must be 1-{MAX_TITLE_CHARS} characters after trimming (got {chars})"
        )));
    }
    Ok(title.to_string())
}

fn valid_description(description: Option<String>) -> Result<Option<String>, TaskError> {
    if let Some(text) = &description {
        check_chars("description", text)?;
    }
    match description {
        Some(text) if text.chars().count() > MAX_DESCRIPTION_CHARS => Err(TaskError::Invalid(
            format!("description must be at most {MAX_DESCRIPTION_CHARS} characters"),
        )),
        other => Ok(other),
    }
}

/// One page of a listing, and how many tasks match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    pub total: u64,
}

/// Where tasks live. Implemented by the store; used by the REST handlers and
/// by the `tasks` capability of tool plugins.
#[async_trait]
pub trait TaskRepository: Send + Sync {
    async fn add(&self, user: &UserId, task: NewTask) -> Result<Task, TaskError>;
    /// Oldest first.
    async fn list(&self, user: &UserId, filter: StatusFilter) -> Result<Vec<Task>, TaskError>;
    /// Up to `limit` tasks after the first `offset`, oldest first. (The
    /// default reads them all; the store reads one page.)
    async fn list_page(
        &self,
        user: &UserId,
        filter: StatusFilter,
        offset: u64,
        limit: u32,
    ) -> Result<TaskPage, TaskError> {
        let all = self.list(user, filter).await?;
        Ok(TaskPage {
            total: all.len() as u64,
            tasks: all
                .into_iter()
                .skip(usize::try_from(offset).unwrap_or(usize::MAX))
                .take(limit as usize)
                .collect(),
        })
    }
    async fn get(&self, user: &UserId, id: i64) -> Result<Task, TaskError>;
    async fn update(&self, user: &UserId, id: i64, patch: TaskPatch) -> Result<Task, TaskError>;
    /// Deletes the task and returns it as it was.
    async fn delete(&self, user: &UserId, id: i64) -> Result<Task, TaskError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_title(input: &str, expected: Result<&str, &str>) {
        let got = NewTask {
            title: input.to_string(),
            description: None,
        }
        .validated();
        match (got, expected) {
            (Ok(task), Ok(title)) => assert_eq!(task.title, title),
            (Err(err), Err(needle)) => assert!(err.to_string().contains(needle), "{err}"),
            (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn titles_are_trimmed_and_bounded() {
        check_title("  Buy milk ", Ok("Buy milk"));
        check_title("   ", Err("1-200 characters"));
        check_title("", Err("(got 0)"));
        check_title(&"é".repeat(200), Ok(&"é".repeat(200)));
        check_title(&"é".repeat(201), Err("(got 201)"));
    }

    #[test]
    fn descriptions_are_bounded() {
        let long = NewTask {
            title: "t".into(),
            description: Some("d".repeat(1001)),
        };
        assert!(long.validated().is_err());
        let patch = TaskPatch {
            description: Some("d".repeat(1000)),
            ..Default::default()
        };
        assert!(patch.validated().is_ok());
    }
}
