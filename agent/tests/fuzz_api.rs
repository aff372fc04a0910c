//! Fuzzing the HTTP API: the real axum router over an in-memory agent (`api_fake`),
//! driven in process with `tower::ServiceExt::oneshot`, with arbitrary and mutated
//! methods, paths, query strings, headers and bodies (TOML, JSON, bytes, deep nesting).
//!
//! Every request gets a well-formed HTTP answer; every 4xx/5xx answer is
//! `{"error": "..."}` JSON; a submission that is refused stores nothing (no proposal
//! reaches the cluster); nothing panics. With a token configured, a request without it
//! gets 401 and changes nothing.
//!
//! The job-file parser on its own is fuzzed by `jobfile_fuzz.rs`; here it is reached
//! through `POST /v1/jobs`. These are proptest suites rather than cargo-fuzz targets:
//! cargo-fuzz needs a nightly toolchain, which CI does not have. A few seconds by default;
//! to search longer: `PROPTEST_CASES=20000 cargo test --release -p saturn-agent --test fuzz_api`.

mod api_fake;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use api_fake::FakeAgent;
use axum::body::{to_bytes, Body};
use axum::http::{header, Method, Request, StatusCode};
use proptest::prelude::*;
use saturn_agent::api::{router, ApiState, MAX_BODY_BYTES};
use tower::ServiceExt;

static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime"));

const VALID_TOML: &str = r#"[[job]]
name = "gpt2"
command = ["python3", "train.py"]
steps = 100
techniques = ["ddp"]
gpus = [1, 2]
profile = { ddp = { 1 = 0.5 } }
"#;

const VALID_JSON: &str = r#"{"job": [{"name": "gpt2", "command": ["python3", "train.py"], "steps": 100,
 "techniques": ["ddp"], "gpus": [1, 2], "profile": {"ddp": {"1": 0.5}}}]}"#;

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    // No regression files: proptest cannot place them for an integration test.
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// A request as generated: everything a client controls.
#[derive(Clone)]
struct Wild {
    method: Method,
    path: String,
    query: String,
    content_type: Option<String>,
    authorization: Option<String>,
    body: Vec<u8>,
}

impl std::fmt::Debug for Wild {
    /// The body is shown shortened: a failing case may carry megabytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = String::from_utf8_lossy(&self.body);
        let shown: String = text.chars().take(160).collect();
        write!(f, "{} {}?{} content-type={:?} authorization={:?} body ({} bytes) {shown:?}", self.method, self.path, self.query, self.content_type, self.authorization, self.body.len())
    }
}

/// Bytes as they may appear in a URL: percent-encoded, raw, or broken escapes.
fn url_part() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(|bytes| bytes.iter().map(|b| format!("%{b:02X}")).collect()),
        "[a-zA-Z0-9._~-]{0,12}",
        prop_oneof![Just("%zz"), Just("%"), Just("%FF%FE"), Just(".."), Just("%2e%2e%2f"), Just("j-000001"), Just("j-000002")].prop_map(String::from),
    ]
}

fn path() -> impl Strategy<Value = String> {
    let known = prop_oneof![
        Just("/v1/status"), Just("/v1/jobs"), Just("/v1/jobs/j-000001"), Just("/v1/jobs/j-000002"), Just("/v1/jobs/j-999999"),
        Just("/v1/jobs/j-000001/logs"), Just("/v1/jobs/j-000002/logs"), Just("/v1/plan"), Just("/v1/profiles"),
        Just("/metrics"), Just("/"), Just("/assets/app.js"), Just("//v1//jobs"), Just("/v1/jobs/"),
    ]
    .prop_map(String::from);
    prop_oneof![
        3 => known,
        1 => url_part().prop_map(|id| format!("/v1/jobs/{id}")),
        1 => url_part().prop_map(|id| format!("/v1/jobs/{id}/logs")),
        1 => proptest::collection::vec(url_part(), 0..4).prop_map(|parts| format!("/{}", parts.join("/"))),
    ]
}

fn query() -> impl Strategy<Value = String> {
    let pair = prop_oneof![
        Just("follow=true".to_string()), Just("tail=2".to_string()), Just("tail=-1".to_string()),
        Just("tail=99999999999999999999999".to_string()), Just("workdir=relative".to_string()),
        Just("workdir=%2Fhome%2Flab".to_string()), Just("file=".to_string()), Just("file=x.toml".to_string()),
        (url_part(), url_part()).prop_map(|(k, v)| format!("{k}={v}")),
        url_part(),
    ];
    proptest::collection::vec(pair, 0..4).prop_map(|pairs| pairs.join("&"))
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(
        prop_oneof![
            Just("application/toml"), Just("application/json"), Just("application/json; charset=utf-8"),
            Just("text/plain"), Just(""), Just("application/jsonx"), Just("\u{7f}"),
        ]
        .prop_map(String::from),
    )
}

/// Bodies: mutated valid files, raw bytes, deep nesting, arbitrary text.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let edit = (0.0..1.0f64, 0u8..3, prop_oneof![Just("[".to_string()), Just("{".to_string()), Just("\"".to_string()), Just("\n".to_string()), "\\PC{0,6}"]);
    let mutated = (prop_oneof![Just(VALID_TOML), Just(VALID_JSON)], proptest::collection::vec(edit, 0..5)).prop_map(|(seed, edits)| {
        edits.into_iter().fold(seed.to_string(), |text, (at, kind, piece)| {
            let chars: Vec<char> = text.chars().collect();
            let i = ((at * chars.len() as f64) as usize).min(chars.len());
            let (head, tail): (String, String) = (chars[..i].iter().collect(), chars[i..].iter().collect());
            match kind {
                0 => format!("{head}{piece}{tail}"),
                1 => format!("{head}{}", tail.chars().skip(piece.len().max(1)).collect::<String>()),
                _ => format!("{head}{head}{tail}"),
            }
        })
    });
    prop_oneof![
        4 => mutated.prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..300),
        1 => (1usize..20_000, prop_oneof![Just("["), Just("{\"a\":"), Just("a = ["), Just("[job.")])
            .prop_map(|(depth, open)| format!("{}1", open.repeat(depth)).into_bytes()),
        1 => "\\PC{0,200}".prop_map(String::into_bytes),
    ]
}

fn wild() -> impl Strategy<Value = Wild> {
    let method = prop_oneof![
        2 => Just(Method::GET), 3 => Just(Method::POST), 1 => Just(Method::DELETE), 1 => Just(Method::PUT),
        1 => Just(Method::HEAD), 1 => Just(Method::OPTIONS), 1 => Just(Method::PATCH),
    ];
    let authorization = proptest::option::of(prop_oneof![Just("Bearer secret".to_string()), Just("Bearer ".to_string()), "\\PC{0,20}"]);
    (method, path(), query(), content_type(), authorization, body())
        .prop_map(|(method, path, query, content_type, authorization, body)| Wild { method, path, query, content_type, authorization, body })
}

/// What came back: status, content type and (for anything but an open log stream) the body.
struct Answer {
    status: StatusCode,
    content_type: String,
    body: Option<Vec<u8>>,
}

/// Sends `wild` through a fresh router over `agent`; `None` when it is not a valid HTTP
/// request at all (the server never sees those).
fn send(agent: &Arc<FakeAgent>, token: Option<&str>, wild: &Wild) -> Option<Answer> {
    let uri = if wild.query.is_empty() { wild.path.clone() } else { format!("{}?{}", wild.path, wild.query) };
    let mut request = Request::builder().method(wild.method.clone()).uri(uri);
    if let Some(value) = &wild.content_type {
        request = request.header(header::CONTENT_TYPE, value.as_str());
    }
    if let Some(value) = &wild.authorization {
        request = request.header(header::AUTHORIZATION, value.as_str());
    }
    let request = request.body(Body::from(wild.body.clone())).ok()?;
    let state = ApiState { services: agent.clone(), token: token.map(Arc::from) };
    RUNTIME.block_on(async {
        let response = router(state).oneshot(request).await.unwrap_or_else(|never| match never {});
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        // A followed log of a live job streams until the job ends: read what comes at once.
        let body = tokio::time::timeout(Duration::from_millis(200), to_bytes(response.into_body(), 64 << 20)).await;
        Some(Answer { status, content_type, body: body.ok().and_then(Result::ok).map(|b| b.to_vec()) })
    })
}

/// The API's contract for any answer.
fn check_answer(answer: &Answer, wild: &Wild) -> Result<(), TestCaseError> {
    if wild.method == Method::HEAD {
        // The headers of the GET answer without its body, as HTTP wants.
        prop_assert!(answer.body.as_deref().unwrap_or_default().is_empty(), "HEAD {} has a body", wild.path);
        return Ok(());
    }
    if answer.status.is_client_error() || answer.status.is_server_error() {
        prop_assert!(answer.content_type.starts_with("application/json"), "{} for {wild:?} is {:?}", answer.status, answer.content_type);
        let body = answer.body.as_deref().unwrap_or_default();
        let error: serde_json::Value = serde_json::from_slice(body).map_err(|e| TestCaseError::fail(format!("{e}: {body:?}")))?;
        let message = error.get("error").and_then(|m| m.as_str()).unwrap_or_default();
        prop_assert!(!message.is_empty(), "{} for {wild:?}: {error}", answer.status);
    } else if answer.content_type.starts_with("application/json") {
        let body = answer.body.as_deref().unwrap_or_default();
        prop_assert!(serde_json::from_slice::<serde_json::Value>(body).is_ok(), "bad JSON for {wild:?}");
    }
    Ok(())
}

/// A refused submission stores nothing; an accepted one stores exactly what it lists.
fn check_submission(agent: &FakeAgent, before: usize, answer: &Answer, wild: &Wild) -> Result<(), TestCaseError> {
    let after = agent.snapshot().jobs().len();
    let submits = agent.proposals().iter().filter(|c| matches!(c, saturn_consensus::Command::SubmitJobs { .. })).count();
    if answer.status == StatusCode::CREATED {
        let body = answer.body.as_deref().unwrap_or_default();
        let listed = serde_json::from_slice::<saturn_agent::views::SubmitView>(body).map(|v| v.jobs.len()).unwrap_or(0);
        prop_assert_eq!(after, before + listed, "{:?}", wild);
    } else {
        prop_assert_eq!(submits, 0, "a refused submission ({}) was proposed: {:?}", answer.status, wild);
        prop_assert_eq!(after, before);
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(384))]

    #[test]
    fn any_request_gets_a_well_formed_answer_and_bad_submissions_store_nothing(wild in wild()) {
        let agent = FakeAgent::with_jobs();
        let before = agent.snapshot().jobs().len();
        let Some(answer) = send(&agent, None, &wild) else { return Ok(()) };
        check_answer(&answer, &wild)?;
        check_submission(&agent, before, &answer, &wild)?;
        if wild.method != Method::POST && wild.method != Method::DELETE {
            prop_assert!(agent.proposals().is_empty(), "{} {} changed the state", wild.method, wild.path);
        }
    }

    #[test]
    fn without_the_token_nothing_is_answered_or_changed(wild in wild()) {
        let agent = FakeAgent::with_jobs();
        let Some(answer) = send(&agent, Some("secret"), &wild) else { return Ok(()) };
        check_answer(&answer, &wild)?;
        if wild.authorization.as_deref() != Some("Bearer secret") {
            // Only the dashboard's page shell (no data) and its login answer without it.
            let public = wild.path == "/" || wild.path.starts_with("/assets/") || wild.path == "/v1/login" || wild.path == "/v1/logout";
            if !public {
                prop_assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
            }
            prop_assert!(agent.proposals().is_empty());
        }
    }
}

#[test]
fn a_valid_submission_is_stored_in_both_forms() {
    for (content_type, body) in [("application/toml", VALID_TOML), ("application/json", VALID_JSON)] {
        let agent = FakeAgent::with_jobs();
        let wild = Wild {
            method: Method::POST,
            path: "/v1/jobs".into(),
            query: "workdir=%2Fhome".into(),
            content_type: Some(content_type.into()),
            authorization: None,
            body: body.as_bytes().to_vec(),
        };
        let answer = send(&agent, None, &wild).expect("a valid request");
        assert_eq!(answer.status, StatusCode::CREATED, "{content_type}");
        assert_eq!(agent.snapshot().jobs().len(), 3);
    }
}

#[test]
fn a_body_over_the_limit_is_refused_with_a_json_error_and_stores_nothing() {
    let agent = FakeAgent::with_jobs();
    let mut body = VALID_TOML.as_bytes().to_vec();
    body.resize(MAX_BODY_BYTES + 1, b'\n');
    let wild = Wild {
        method: Method::POST,
        path: "/v1/jobs".into(),
        query: String::new(),
        content_type: Some("application/toml".into()),
        authorization: None,
        body,
    };
    let answer = send(&agent, None, &wild).expect("a valid request");
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    check_answer(&answer, &wild).expect("the API's error contract");
    assert!(agent.proposals().is_empty());
}

#[test]
fn hostile_requests_get_json_errors_with_the_right_status() {
    let deep_json = format!("{{\"job\": {}1", "[".repeat(50_000));
    let deep_toml = format!("a = {}1", "[".repeat(50_000));
    // (method, path, query, content type, body, expected status)
    type Case<'a> = (Method, &'a str, &'a str, &'a str, Vec<u8>, StatusCode);
    let cases: [Case; 8] = [
        (Method::POST, "/v1/jobs/j-000001", "", "application/toml", VALID_TOML.into(), StatusCode::METHOD_NOT_ALLOWED),
        (Method::GET, "/v1/jobs/%FF%FE", "", "", Vec::new(), StatusCode::BAD_REQUEST),
        (Method::GET, "/v1/jobs/..%2F..%2Fetc%2Fpasswd/logs", "", "", Vec::new(), StatusCode::NOT_FOUND),
        (Method::POST, "/v1/jobs", "workdir=relative", "application/toml", VALID_TOML.into(), StatusCode::BAD_REQUEST),
        (Method::POST, "/v1/jobs", "", "application/toml", vec![0xff, 0xfe, b'a'], StatusCode::BAD_REQUEST),
        (Method::POST, "/v1/jobs", "", "application/json", deep_json.into_bytes(), StatusCode::UNPROCESSABLE_ENTITY),
        (Method::POST, "/v1/jobs", "", "application/toml", deep_toml.into_bytes(), StatusCode::UNPROCESSABLE_ENTITY),
        (Method::DELETE, "/v1/jobs/j-000002", "", "", Vec::new(), StatusCode::CONFLICT),
    ];
    for (method, path, query, content_type, body, expected) in cases {
        let agent = FakeAgent::with_jobs();
        let wild = Wild {
            method,
            path: path.into(),
            query: query.into(),
            content_type: Some(content_type.into()).filter(|c: &String| !c.is_empty()),
            authorization: None,
            body,
        };
        let answer = send(&agent, None, &wild).expect("a valid request");
        assert_eq!(answer.status, expected, "{wild:?}");
        check_answer(&answer, &wild).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(agent.snapshot().jobs().len(), 2, "{wild:?} changed the jobs");
    }
}
