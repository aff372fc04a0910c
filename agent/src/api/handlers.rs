//! JSON handlers of `/v1/...`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use saturn_consensus::{Command, CommandResult, JobId};

use super::{error, render, ApiState, ServiceError};
use crate::cluster::now_ms;
use crate::jobfile;
use crate::views::{JobsView, SubmitView, SubmittedJob};

pub async fn status(State(api): State<ApiState>) -> Response {
    let services = &api.services;
    let view = render::status(&services.cluster().state(), &services.raft(), &services.soft(), &services.name());
    Json(view).into_response()
}

pub async fn list_jobs(State(api): State<ApiState>) -> Response {
    let state = api.services.cluster().state();
    let now = now_ms();
    let jobs = state.jobs().values().map(|record| render::job(record, now)).collect();
    Json(JobsView { jobs, sweeps: super::leaderboard::leaderboards(&state) }).into_response()
}

pub async fn get_job(State(api): State<ApiState>, Path(id): Path<String>) -> Response {
    let state = api.services.cluster().state();
    let Some(record) = state.job(&JobId(id.clone())) else {
        return error(StatusCode::NOT_FOUND, format!("no job {id}: `saturn job status` lists the jobs"));
    };
    let mut view = render::job(record, now_ms());
    view.metric_history = super::logs::metric_history(&api, &record.id).await;
    Json(view).into_response()
}

pub async fn cancel_job(State(api): State<ApiState>, Path(id): Path<String>) -> Response {
    let job = JobId(id.clone());
    if api.services.cluster().state().job(&job).is_none() {
        return error(StatusCode::NOT_FOUND, format!("no job {id}: `saturn job status` lists the jobs"));
    }
    match api.services.cluster().propose(Command::CancelJob { job: job.clone(), at_ms: now_ms() }).await.map_err(ServiceError::from) {
        Ok(CommandResult::Rejected(why)) => error(StatusCode::CONFLICT, why.to_string()),
        Ok(_) => {
            let state = api.services.cluster().state();
            match state.job(&job) {
                Some(record) => Json(render::job(record, now_ms())).into_response(),
                None => error(StatusCode::NOT_FOUND, format!("no job {id}")),
            }
        }
        Err(err) => err.into_response(),
    }
}

/// `POST /v1/jobs`: a TOML job file (`Content-Type: application/toml`) or its JSON form.
/// Query: `workdir` (the submitter's directory, default for jobs without one) and
/// `file` (the file's name, prefixing problem lines).
pub async fn submit_jobs(
    State(api): State<ApiState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(StatusCode::BAD_REQUEST, "the job file is not UTF-8 text");
    };
    let workdir = query.get("workdir").map(String::as_str).unwrap_or("/");
    if !workdir.starts_with('/') {
        return error(StatusCode::BAD_REQUEST, format!("workdir {workdir:?} must be an absolute path"));
    }
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/toml");
    let parsed = if content_type.starts_with("application/json") {
        jobfile::parse_job_json(text, workdir)
    } else {
        let file = query.get("file").map(String::as_str).filter(|f| !f.is_empty()).unwrap_or("job file");
        jobfile::parse_job_file(text, file, workdir)
    };
    let specs = match parsed {
        Ok(specs) if specs.is_empty() => {
            return error(StatusCode::BAD_REQUEST, "the job file holds no [[job]] or [[sweep]] table: nothing to submit")
        }
        Ok(specs) => specs,
        Err(problems) => return error(StatusCode::UNPROCESSABLE_ENTITY, problems.to_string()),
    };
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    match api.services.cluster().propose(Command::SubmitJobs { specs, at_ms: now_ms() }).await.map_err(ServiceError::from) {
        Ok(CommandResult::Submitted { jobs }) => {
            let jobs = jobs
                .into_iter()
                .zip(names)
                .map(|(id, name)| SubmittedJob { id: id.to_string(), name })
                .collect();
            (StatusCode::CREATED, Json(SubmitView { jobs })).into_response()
        }
        Ok(CommandResult::Rejected(why)) => error(StatusCode::CONFLICT, why.to_string()),
        Ok(other) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("unexpected result of a submission: {other:?}")),
        Err(err) => err.into_response(),
    }
}

pub async fn plan(State(api): State<ApiState>) -> Response {
    match render::plan(&api.services.cluster().state()) {
        Some(view) => Json(view).into_response(),
        None => error(StatusCode::NOT_FOUND, "no plan yet: the leader plans once jobs are profiled"),
    }
}

pub async fn profiles(State(api): State<ApiState>) -> Response {
    Json(render::profiles(&api.services.cluster().state())).into_response()
}

pub async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint: see /v1/status, /v1/jobs, /v1/plan, /metrics")
}
