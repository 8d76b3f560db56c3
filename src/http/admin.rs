//! Admin endpoints: jobs and the runs that create them.

use super::error::AppError;
use crate::app::App;
use crate::jobs::JobRecord;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

fn job_json(job: &JobRecord) -> Value {
    job.to_json()
}

/// `POST /v1/admin/tagging`: re-run the tagging rules over every hot conversation.
pub async fn tagging(State(app): State<App>) -> Result<(StatusCode, Json<Value>), AppError> {
    let job = app.start_full_tagging().await?;
    Ok((StatusCode::ACCEPTED, Json(job_json(&job))))
}

/// `POST /v1/admin/reindex`: build a new index from the store and swap it in.
pub async fn reindex(State(app): State<App>) -> Result<(StatusCode, Json<Value>), AppError> {
    let job = app.start_reindex().await?;
    Ok((StatusCode::ACCEPTED, Json(job_json(&job))))
}

/// `GET /v1/admin/jobs`: recent jobs, newest first.
pub async fn jobs(State(app): State<App>) -> Result<Json<Value>, AppError> {
    let jobs = app.jobs.list(100).await?;
    Ok(Json(
        json!({"jobs": jobs.iter().map(job_json).collect::<Vec<_>>()}),
    ))
}

/// `GET /v1/admin/jobs/{id}`.
pub async fn job(State(app): State<App>, Path(id): Path<String>) -> Result<Json<Value>, AppError> {
    Ok(Json(job_json(&app.jobs.get(&id).await?)))
}

/// `DELETE /v1/admin/jobs/{id}`: ask a running job to stop.
pub async fn cancel(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let job = app.jobs.get(&id).await?;
    if !app.jobs.cancel(&id) {
        return Err(AppError::Conflict("the job is not running"));
    }
    Ok((StatusCode::ACCEPTED, Json(job_json(&job))))
}
