//! The tasks table, as a [`TaskRepository`].
//!
//! Every statement filters on `user_id`, so an id of another user's task
//! finds nothing: it is "not found", exactly like an id that never existed.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::db::RunOn;
use super::{Store, db_error, now};

fn unavailable(err: sqlx::Error) -> TaskError {
    db_error(err).into()
}
use crate::tasks::{
    NewTask, StatusFilter, Task, TaskError, TaskPage, TaskPatch, TaskRepository, UserId,
};

/// The columns of a [`Task`], for `concat!` into static SQL. `completed` is
/// read as an integer: sqlx's `Any` driver cannot decode SQLite booleans.
macro_rules! task_columns {
    () => {
        "id, title, description, CASE WHEN completed THEN 1 ELSE 0 END AS completed, \
         created_at, updated_at"
    };
}

fn task(row: &AnyRow) -> Result<Task, sqlx::Error> {
    Ok(Task {
        id: row.try_get("id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        completed: row.try_get::<i64, _>("completed")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[async_trait]
impl TaskRepository for Store {
    async fn add(&self, user: &UserId, new: NewTask) -> Result<Task, TaskError> {
        let new = new.validated()?;
        let at = now();
        // The quota is checked in the insert itself: one statement, and
        // SQLite's single writer makes it exact (PostgreSQL's concurrent
        // inserts may pass it by a few).
        let row = self.write_returning(sqlx::query(concat!(
            "INSERT INTO tasks (user_id, title, description, completed, created_at, updated_at) \
             SELECT $1, $2, $3, FALSE, $4, $4 \
             WHERE $5 <= 0 OR (SELECT COUNT(*) FROM tasks WHERE user_id = $1) < $5 \
             RETURNING ",
            task_columns!()
        ))
        .bind(user)
        .bind(&new.title)
        .bind(&new.description)
        .bind(&at)
        .bind(self.max_tasks_per_user))
        .await
        .map_err(unavailable)?
        .ok_or(TaskError::Quota(self.max_tasks_per_user))?;
        task(&row).map_err(unavailable)
    }

    async fn list(&self, user: &UserId, filter: StatusFilter) -> Result<Vec<Task>, TaskError> {
        let sql = match filter {
            StatusFilter::All => concat!(
                "SELECT ",
                task_columns!(),
                " FROM tasks WHERE user_id = $1 ORDER BY id"
            ),
            StatusFilter::Pending => concat!(
                "SELECT ",
                task_columns!(),
                " FROM tasks WHERE user_id = $1 AND completed = FALSE ORDER BY id"
            ),
            StatusFilter::Completed => concat!(
                "SELECT ",
                task_columns!(),
                " FROM tasks WHERE user_id = $1 AND completed = TRUE ORDER BY id"
            ),
        };
        let rows = sqlx::query(sql)
            .bind(user)
            .fetch_all_on(&self.db)
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(task)
            .collect::<Result<_, _>>()
            .map_err(unavailable)
    }

    async fn list_page(
        &self,
        user: &UserId,
        filter: StatusFilter,
        offset: u64,
        limit: u32,
    ) -> Result<TaskPage, TaskError> {
        let (page, count) = match filter {
            StatusFilter::All => (
                concat!(
                    "SELECT ",
                    task_columns!(),
                    " FROM tasks WHERE user_id = $1 ORDER BY id LIMIT $2 OFFSET $3"
                ),
                "SELECT COUNT(*) AS total FROM tasks WHERE user_id = $1",
            ),
            StatusFilter::Pending => (
                concat!(
                    "SELECT ",
                    task_columns!(),
                    " FROM tasks WHERE user_id = $1 AND completed = FALSE ORDER BY id LIMIT $2 OFFSET $3"
                ),
                "SELECT COUNT(*) AS total FROM tasks WHERE user_id = $1 AND completed = FALSE",
            ),
            StatusFilter::Completed => (
                concat!(
                    "SELECT ",
                    task_columns!(),
                    " FROM tasks WHERE user_id = $1 AND completed = TRUE ORDER BY id LIMIT $2 OFFSET $3"
                ),
                "SELECT COUNT(*) AS total FROM tasks WHERE user_id = $1 AND completed = TRUE",
            ),
        };
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let rows = sqlx::query(page)
            .bind(user)
            .bind(i64::from(limit))
            .bind(offset)
            .fetch_all_on(&self.db)
            .await
            .map_err(unavailable)?;
        let total: i64 = sqlx::query(count)
            .bind(user)
            .fetch_one_on(&self.db)
            .await
            .and_then(|row| row.try_get("total"))
            .map_err(unavailable)?;
        Ok(TaskPage {
            tasks: rows
                .iter()
                .map(task)
                .collect::<Result<_, _>>()
                .map_err(unavailable)?,
            total: total.max(0) as u64,
        })
    }

    async fn get(&self, user: &UserId, id: i64) -> Result<Task, TaskError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            task_columns!(),
            " FROM tasks WHERE user_id = $1 AND id = $2"
        ))
        .bind(user)
        .bind(id)
        .fetch_optional_on(&self.db)
        .await
        .map_err(unavailable)?
        .ok_or(TaskError::NotFound(id))?;
        task(&row).map_err(unavailable)
    }

    async fn update(&self, user: &UserId, id: i64, patch: TaskPatch) -> Result<Task, TaskError> {
        let patch = patch.validated()?;
        // An empty description clears it; `None` keeps the stored one.
        let (set_description, description) = match patch.description {
            Some(text) if text.trim().is_empty() => (true, None),
            Some(text) => (true, Some(text)),
            None => (false, None),
        };
        let row = self
            .write_returning(
                sqlx::query(concat!(
                    "UPDATE tasks SET \
               title = COALESCE($3, title), \
               description = CASE WHEN $4 THEN $5 ELSE description END, \
               completed = COALESCE($6, completed), \
               updated_at = $7 \
             WHERE user_id = $1 AND id = $2 RETURNING ",
                    task_columns!()
                ))
                .bind(user)
                .bind(id)
                .bind(&patch.title)
                .bind(set_description)
                .bind(&description)
                .bind(patch.completed)
                .bind(now()),
            )
            .await
            .map_err(unavailable)?
            .ok_or(TaskError::NotFound(id))?;
        task(&row).map_err(unavailable)
    }

    async fn delete(&self, user: &UserId, id: i64) -> Result<Task, TaskError> {
        let row = self
            .write_returning(
                sqlx::query(concat!(
                    "DELETE FROM tasks WHERE user_id = $1 AND id = $2 RETURNING ",
                    task_columns!()
                ))
                .bind(user)
                .bind(id),
            )
            .await
            .map_err(unavailable)?
            .ok_or(TaskError::NotFound(id))?;
        task(&row).map_err(unavailable)
    }
}
