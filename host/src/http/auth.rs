//! Authentication at the HTTP edge: the bearer token becomes an [`AuthUser`],
//! and routes under `/api/{user_id}/…` check that the path names that user
//! and, for the task routes, that the token has the scope they need.
//!
//! Order of answers (docs/HTTP-API.md, "Authentication"): no or bad token → 401; a valid
//! token for another user's path, or without the scope → 403; another user's
//! resource → 404.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::{ApiError, AppState};
use crate::auth::{AuthError, Caller};

/// The caller the request's bearer token speaks for.
pub struct AuthUser(pub Caller);

impl AuthUser {
    /// The user, if `path_user` (the `{user_id}` of the route) is them.
    pub fn owns(&self, path_user: &str) -> Result<&str, ApiError> {
        if self.0.user == path_user {
            Ok(&self.0.user)
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the token does not belong to the user in the path",
            ))
        }
    }

    /// The user, if `path_user` is them and the token may use `scope`.
    pub fn owns_with(&self, path_user: &str, scope: &str) -> Result<&str, ApiError> {
        let user = self.owns(path_user)?;
        if !self.0.scopes.allow(Some(scope)) {
            return Err(ApiError::insufficient_scope(Some(scope), "this route"));
        }
        Ok(user)
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(parts).ok_or_else(|| unauthorized(AuthError::Missing))?;
        state
            .auth
            .verify(token)
            .await
            .map(AuthUser)
            .map_err(unauthorized)
    }
}

pub(super) fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn unauthorized(error: AuthError) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", error.to_string())
}
