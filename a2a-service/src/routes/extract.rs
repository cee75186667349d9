//! `Caller` and `Ingester` as axum extractors: the header checks of
//! [`crate::auth`] against the service's keys, with each refusal counted in
//! `/metrics`. They live above the state, which the checks themselves do
//! not need.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::auth::{Caller, Ingester, Trust, unix_now};
use crate::error::AppError;
use crate::state::AppState;

/// Runs one of the header checks of `auth` and counts a refusal in `/metrics`.
fn checked<T>(
    parts: &Parts,
    state: &AppState,
    check: fn(&HeaderMap, &Trust<'_>, u64) -> Result<T, AppError>,
) -> Result<T, AppError> {
    let result = check(&parts.headers, &state.trust(), unix_now());
    if result.is_err() {
        state.metrics.auth_rejected();
    }
    result
}

impl<S> FromRequestParts<S> for Caller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        checked(parts, &AppState::from_ref(state), Caller::from_headers)
    }
}

impl<S> FromRequestParts<S> for Ingester
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        checked(parts, &AppState::from_ref(state), Ingester::from_headers)
    }
}
