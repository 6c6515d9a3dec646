//! The tasks REST API (docs/HTTP-API.md, "Tasks"): the same store the
//! task tools use, for the user in the path.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::AuthUser;
use super::error::ErrorBody;
use super::{ApiError, AppJson, AppState};
use crate::tasks::{NewTask, StatusFilter, Task, TaskError, TaskPatch, TaskRepository};
use crate::tasks::{TASKS_READ, TASKS_WRITE};

/// A task on the wire.
#[derive(Serialize, ToSchema)]
pub struct TaskBody {
    id: i64,
    title: String,
    description: Option<String>,
    completed: bool,
    created_at: String,
    updated_at: String,
}

impl From<Task> for TaskBody {
    fn from(task: Task) -> Self {
        TaskBody {
            id: task.id,
            title: task.title,
            description: task.description,
            completed: task.completed,
            created_at: task.created_at,
            updated_at: task.updated_at,
        }
    }
}

#[derive(Deserialize, IntoParams)]
pub struct ListQuery {
    /// `all` (the default), `pending` or `completed`.
    status: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateBody {
    #[schema(min_length = 1, max_length = 200)]
    title: String,
    #[schema(max_length = 1000)]
    description: Option<String>,
}

/// The fields to change; those left out stay as they are.
#[derive(Deserialize, ToSchema)]
pub struct UpdateBody {
    #[schema(min_length = 1, max_length = 200)]
    title: Option<String>,
    #[schema(max_length = 1000)]
    description: Option<String>,
    completed: Option<bool>,
}

impl From<TaskError> for ApiError {
    fn from(error: TaskError) -> Self {
        match error {
            TaskError::NotFound(_) => ApiError::not_found(error.to_string()),
            TaskError::Invalid(message) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                message,
            ),
            TaskError::Quota(_) => {
                ApiError::new(StatusCode::CONFLICT, "quota_exceeded", error.to_string())
            }
            TaskError::Unavailable => ApiError::storage_unavailable(),
        }
    }
}

#[utoipa::path(get, operation_id = "list_tasks", path = "/api/{user_id}/tasks", tag = "tasks",
    params(("user_id" = String, Path, description = "The token's user"), ListQuery),
    responses((status = 200, body = Vec<TaskBody>), (status = 400, response = ErrorBody),
        (status = 401, response = ErrorBody), (status = 403, response = ErrorBody),
        (status = 503, response = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(user): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<TaskBody>>, ApiError> {
    let user = auth.owns_with(&user, TASKS_READ)?;
    let filter = match query.status.as_deref() {
        None => StatusFilter::All,
        Some(text) => StatusFilter::parse(text).ok_or_else(|| {
            ApiError::bad_request("status must be one of all, pending, completed")
        })?,
    };
    let tasks = state.store.list(user, filter).await?;
    Ok(Json(tasks.into_iter().map(TaskBody::from).collect()))
}

#[utoipa::path(post, operation_id = "create_task", path = "/api/{user_id}/tasks", tag = "tasks", request_body = CreateBody,
    params(("user_id" = String, Path, description = "The token's user")),
    responses((status = 201, body = TaskBody), (status = 400, response = ErrorBody),
        (status = 401, response = ErrorBody), (status = 403, response = ErrorBody),
        (status = 409, response = ErrorBody),
        (status = 413, response = ErrorBody), (status = 415, response = ErrorBody),
        (status = 422, response = ErrorBody), (status = 503, response = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(user): Path<String>,
    AppJson(body): AppJson<CreateBody>,
) -> Result<impl IntoResponse, ApiError> {
    let user = auth.owns_with(&user, TASKS_WRITE)?;
    let new = NewTask {
        title: body.title,
        description: body.description,
    };
    let task = state.store.add(user, new).await?;
    Ok((StatusCode::CREATED, Json(TaskBody::from(task))))
}

#[utoipa::path(get, operation_id = "get_task", path = "/api/{user_id}/tasks/{id}", tag = "tasks",
    params(("user_id" = String, Path, description = "The token's user"), ("id" = i64, Path, minimum = 1)),
    responses((status = 200, body = TaskBody), (status = 400, response = ErrorBody),
        (status = 401, response = ErrorBody), (status = 403, response = ErrorBody),
        (status = 404, response = ErrorBody), (status = 503, response = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((user, id)): Path<(String, String)>,
) -> Result<Json<TaskBody>, ApiError> {
    let user = auth.owns_with(&user, TASKS_READ)?;
    Ok(Json(state.store.get(user, task_id(&id)?).await?.into()))
}

#[utoipa::path(put, operation_id = "update_task", path = "/api/{user_id}/tasks/{id}", tag = "tasks", request_body = UpdateBody,
    params(("user_id" = String, Path, description = "The token's user"), ("id" = i64, Path, minimum = 1)),
    responses((status = 200, body = TaskBody), (status = 400, response = ErrorBody),
        (status = 401, response = ErrorBody), (status = 403, response = ErrorBody),
        (status = 404, response = ErrorBody), (status = 413, response = ErrorBody),
        (status = 415, response = ErrorBody), (status = 422, response = ErrorBody),
        (status = 503, response = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((user, id)): Path<(String, String)>,
    AppJson(body): AppJson<UpdateBody>,
) -> Result<Json<TaskBody>, ApiError> {
    let user = auth.owns_with(&user, TASKS_WRITE)?;
    let patch = TaskPatch {
        title: body.title,
        description: body.description,
        completed: body.completed,
    };
    Ok(Json(
        state.store.update(user, task_id(&id)?, patch).await?.into(),
    ))
}

#[utoipa::path(delete, operation_id = "delete_task", path = "/api/{user_id}/tasks/{id}", tag = "tasks",
    params(("user_id" = String, Path, description = "The token's user"), ("id" = i64, Path, minimum = 1)),
    responses((status = 204, description = "Deleted"), (status = 400, response = ErrorBody),
        (status = 401, response = ErrorBody), (status = 403, response = ErrorBody),
        (status = 404, response = ErrorBody), (status = 503, response = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((user, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let user = auth.owns_with(&user, TASKS_WRITE)?;
    state.store.delete(user, task_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PATCH …/complete` toggles, as the spec's frontend expects.
#[utoipa::path(patch, operation_id = "toggle_task", path = "/api/{user_id}/tasks/{id}/complete", tag = "tasks",
    params(("user_id" = String, Path, description = "The token's user"), ("id" = i64, Path, minimum = 1)),
    responses((status = 200, body = TaskBody), (status = 400, response = ErrorBody),
        (status = 401, response = ErrorBody), (status = 403, response = ErrorBody),
        (status = 404, response = ErrorBody), (status = 503, response = ErrorBody)))]
pub async fn toggle_complete(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((user, id)): Path<(String, String)>,
) -> Result<Json<TaskBody>, ApiError> {
    let user = auth.owns_with(&user, TASKS_WRITE)?;
    let id = task_id(&id)?;
    let task = state.store.get(user, id).await?;
    let patch = TaskPatch {
        completed: Some(!task.completed),
        ..TaskPatch::default()
    };
    Ok(Json(state.store.update(user, id, patch).await?.into()))
}

/// Task ids are positive integers; anything else names no task.
fn task_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            ApiError::bad_request(format!("{text:?} is not a task id (a positive integer)"))
        })
}
