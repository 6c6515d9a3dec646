//! `GET /api/{user_id}/usage?since=` (docs/HTTP-API.md, "Usage"): what the
//! user's chat turns cost, per UTC day, provider and model, with today's
//! spend against the operator's daily budget.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

use super::auth::AuthUser;
use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::agent::usage::day_start;
use crate::store::UsageDay;

/// Days reported when `since` is not given.
const DEFAULT_DAYS: i64 = 30;

#[derive(Deserialize, IntoParams)]
pub struct UsageQuery {
    /// A day (`YYYY-MM-DD`, from its UTC midnight) or an RFC 3339 time;
    /// by default the last 30 days.
    since: Option<String>,
}

/// The user's usage since a time.
#[derive(Serialize, ToSchema)]
pub struct UsageBody {
    /// RFC 3339: what is counted starts here.
    since: String,
    days: Vec<UsageDayBody>,
    total: Totals,
    /// Tokens spent today (UTC), which the daily budget counts.
    today_tokens: i64,
    /// `WASMGATE_USER_DAILY_TOKENS`; null when there is none.
    daily_budget: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct UsageDayBody {
    /// `YYYY-MM-DD`, UTC.
    day: String,
    provider: String,
    model: String,
    /// Provider rounds (a turn has one per tool round, then the answer).
    rounds: i64,
    input_tokens: i64,
    output_tokens: i64,
}

#[derive(Serialize, ToSchema, Default)]
pub struct Totals {
    rounds: i64,
    input_tokens: i64,
    output_tokens: i64,
}

impl From<UsageDay> for UsageDayBody {
    fn from(day: UsageDay) -> Self {
        UsageDayBody {
            day: day.day,
            provider: day.provider,
            model: day.model,
            rounds: day.rounds,
            input_tokens: day.input_tokens,
            output_tokens: day.output_tokens,
        }
    }
}

#[utoipa::path(get, operation_id = "read_usage", path = "/api/{user_id}/usage", tag = "usage",
    params(("user_id" = String, Path, description = "The token's user"), UsageQuery),
    responses((status = 200, body = UsageBody), (status = 400, response = ErrorBody),
        (status = 401, response = ErrorBody), (status = 403, response = ErrorBody),
        (status = 503, response = ErrorBody)))]
pub async fn usage(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(user): Path<String>,
    Query(query): Query<UsageQuery>,
) -> Result<Json<UsageBody>, ApiError> {
    let user = auth.owns(&user)?;
    let now = OffsetDateTime::now_utc();
    let since = match query.since.as_deref() {
        None => day_start(now - time::Duration::days(DEFAULT_DAYS - 1)),
        Some(text) => parse_since(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "since must be a day (YYYY-MM-DD) or an RFC 3339 time, not {text:?}"
            ))
        })?,
    };
    let days = state.store.usage_by_day(user, &since).await?;
    let total = days.iter().fold(Totals::default(), |total, day| Totals {
        rounds: total.rounds + day.rounds,
        input_tokens: total.input_tokens + day.input_tokens,
        output_tokens: total.output_tokens + day.output_tokens,
    });
    let today_tokens = state.store.tokens_since(user, &day_start(now)).await?;
    let budget = state.config.user_daily_tokens;
    Ok(Json(UsageBody {
        since,
        days: days.into_iter().map(UsageDayBody::from).collect(),
        total,
        today_tokens,
        daily_budget: (budget > 0).then_some(budget),
    }))
}

/// `since` as the store's RFC 3339 UTC text.
fn parse_since(text: &str) -> Option<String> {
    let time = match OffsetDateTime::parse(text, &Rfc3339) {
        Ok(time) => time,
        Err(_) => {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            time::Date::parse(text, &format)
                .ok()?
                .midnight()
                .assume_utc()
        }
    };
    time.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok()
}
