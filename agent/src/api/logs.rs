//! `GET /v1/jobs/{id}/logs[?follow=true][&tail=N]`: a job's stdout+stderr, read from the
//! host that ran it, streamed while `follow` is set and the job has not ended.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use saturn_consensus::apply::MAX_METRIC_NAMES as MAX_METRICS_PER_JOB;
use saturn_consensus::JobId;

use super::{error, ApiState};
use crate::executor::protocol::{parse_line, Report};

/// Bytes fetched per read from the host.
const CHUNK: usize = 256 * 1024;
/// How often a followed log is polled for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

pub async fn job_logs(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let job = JobId(id.clone());
    if api.services.cluster().state().job(&job).is_none() {
        return error(StatusCode::NOT_FOUND, format!("no job {id}: `saturn job status` lists the jobs"));
    }
    let follow = query.get("follow").is_some_and(|v| v == "true" || v == "1");
    let tail: Option<usize> = query.get("tail").and_then(|v| v.parse().ok());
    if !follow {
        return match read_all(&api, &job).await {
            Ok(data) => {
                let data = match tail {
                    Some(lines) => last_lines(&data, lines),
                    None => data,
                };
                ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], data).into_response()
            }
            Err(err) => err.into_response(),
        };
    }
    let stream = futures::stream::unfold((api, job, 0u64, false), |(api, job, offset, done)| async move {
        if done {
            return None;
        }
        loop {
            let ended = api.services.cluster().state().job(&job).is_none_or(|j| j.state.is_terminal());
            match api.services.read_log(&job, offset, CHUNK).await {
                Ok(piece) if !piece.data.is_empty() => {
                    let next = piece.next_offset;
                    return Some((Ok::<_, std::io::Error>(piece.data), (api, job, next, false)));
                }
                Ok(_) if ended => return None,
                Ok(_) => {}
                Err(err) if ended => {
                    let line = format!("saturn: log unavailable: {err}\n").into_bytes();
                    return Some((Ok(line), (api, job, offset, true)));
                }
                // The host may be briefly unreachable; keep following.
                Err(_) => {}
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    });
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], Body::from_stream(stream)).into_response()
}

/// The whole log as kept (bounded by rotation), read chunk by chunk.
async fn read_all(api: &ApiState, job: &JobId) -> Result<Vec<u8>, super::ServiceError> {
    let mut data = Vec::new();
    let mut offset = 0;
    loop {
        let piece = api.services.read_log(job, offset, CHUNK).await?;
        if piece.data.is_empty() {
            return Ok(data);
        }
        data.extend_from_slice(&piece.data);
        offset = piece.next_offset;
        if data.len() > super::MAX_BODY_BYTES * 8 {
            return Ok(data);
        }
    }
}

fn last_lines(data: &[u8], lines: usize) -> Vec<u8> {
    let mut count = 0;
    for (i, byte) in data.iter().enumerate().rev() {
        if *byte == b'\n' && i + 1 != data.len() {
            count += 1;
            if count == lines {
                return data[i + 1..].to_vec();
            }
        }
    }
    data.to_vec()
}

/// Metric curves (name → (step, value) points) parsed from the job's log: each
/// `SATURN metric` line is placed at the last `SATURN step=` seen before it.
pub async fn metric_history(api: &ApiState, job: &JobId) -> BTreeMap<String, Vec<(u64, f64)>> {
    let Ok(data) = read_all(api, job).await else {
        return BTreeMap::new();
    };
    history_of(&String::from_utf8_lossy(&data))
}

/// Most points kept per metric curve.
pub const MAX_HISTORY_POINTS: usize = 2000;

/// The curves of a log's text: at most [`MAX_METRICS_PER_JOB`] names (the first ones
/// seen, as the replicated state keeps them) and [`MAX_HISTORY_POINTS`] points each.
fn history_of(text: &str) -> BTreeMap<String, Vec<(u64, f64)>> {
    let mut step = 0;
    let mut history: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
    for line in text.lines() {
        match parse_line(line) {
            Some(Report::Step(n)) => step = n,
            Some(Report::Metric { name, value }) => {
                if history.len() >= MAX_METRICS_PER_JOB && !history.contains_key(&name) {
                    continue;
                }
                let points = history.entry(name).or_default();
                if points.len() < MAX_HISTORY_POINTS {
                    points.push((step, value));
                }
            }
            _ => {}
        }
    }
    history
}

#[cfg(test)]
mod tests {
    use super::{history_of, last_lines, MAX_HISTORY_POINTS, MAX_METRICS_PER_JOB};

    #[test]
    fn the_metric_history_keeps_at_most_64_names_and_2000_points_each() {
        let mut log = String::new();
        for i in 0..5000 {
            log.push_str(&format!("SATURN step={i}\nSATURN metric loss=1.5\nSATURN metric new_{i}=1\n"));
        }
        let history = history_of(&log);
        assert_eq!(history.len(), MAX_METRICS_PER_JOB);
        assert_eq!(history["loss"].len(), MAX_HISTORY_POINTS);
        assert!(history.contains_key("new_0") && !history.contains_key("new_4999"));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n".to_vec());
        assert_eq!(last_lines(b"a\nb\nc\n", 10), b"a\nb\nc\n".to_vec());
    }
}
