//! Scenario: a user opens the dashboard of a live 3-agent mesh running a sweep of the
//! simulated job. The API needs its token: without it the page asks and shows no data,
//! a wrong one is refused on the page, the right one (given once) shows the live view. Headless Chromium renders the page (its scripts poll the API like in a
//! real browser); the rendered DOM shows the 3 agents, every job of the sweep, and a
//! Gantt chart whose bars are exactly the plan `GET /v1/plan` answers at that moment:
//! same jobs, hosts, GPUs and states. A screenshot is left for a person to look at in
//! `target/test-artifacts/dashboard.png`.
//!
//! Needs Chromium (Debian's `chromium`, or `SATURN_CHROMIUM=/path/to/browser`); without
//! it the test fails under `CI=true` and elsewhere prints that it checked nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use saturn_agent::views::PlanView;
use saturn_tests::{artifacts_dir, eventually, synth_sweep, Harness, Setup};

const JOBS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_mesh_the_jobs_and_the_plan_of_a_running_sweep() {
    let Some(browser) = find_chromium() else {
        saturn_tests::missing_prerequisite("no Chromium found (apt-get install chromium, or set SATURN_CHROMIUM): dashboard not checked");
        return;
    };
    let harness = Harness::start(&Setup::new(3)).expect("agents start");
    if let Err(err) = scenario(&harness, &browser).await {
        panic!("{err:#}\n{}", harness.logs());
    }
}

async fn scenario(harness: &Harness, browser: &Path) -> Result<()> {
    harness.wait_formed(0, 3, Duration::from_secs(40)).await?;
    // Long enough (tens of seconds) that the sweep is still running while the page renders.
    let sweep = synth_sweep(&harness.saturn, "dash", JOBS, 1500, "");
    let submitted = harness.submit(0, &sweep).await?;
    let ids: BTreeSet<String> = submitted.jobs.iter().map(|j| j.id.clone()).collect();
    let agents: BTreeSet<String> = harness.cluster.agents.iter().map(|a| a.name.clone()).collect();
    // A follower's page, on purpose: every agent serves the whole mesh's view.
    let viewer = 1;
    let page_url = format!("{}/", harness.cluster.agents[viewer].api_url());
    let profile = harness.dir().join("chromium-profile");

    // Every request needs the token. Without it the page shell loads and asks for it,
    // showing no data; with a wrong one it says so.
    let bare = Page::parse(&String::from_utf8_lossy(&chromium(browser, &profile, &["--dump-dom".into()], &page_url).await?));
    if bare.auth_hidden || !bare.agents.is_empty() || !bare.jobs.is_empty() || !bare.bars.is_empty() {
        bail!("without a token the page must ask for it and show no data: {bare:?}");
    }
    let wrong_url = format!("{page_url}#token=not-the-right-token-0123");
    let wrong = Page::parse(&String::from_utf8_lossy(&chromium(browser, &profile, &["--dump-dom".into()], &wrong_url).await?));
    if wrong.auth_hidden || !wrong.auth_error.contains("Token refused") || !wrong.jobs.is_empty() {
        bail!("a wrong token must be refused on the page, with no data: {wrong:?}");
    }
    // The right token, handed over once in the fragment (never sent to the server as is).
    let url = format!("{page_url}#token={}", harness.cluster.token);

    let page = eventually("the rendered dashboard to match the plan", Duration::from_secs(50), || async {
        // Wait for the sweep to be live on the plan. The plan is read before and after
        // rendering: a page rendered while it changed proves nothing, so that round is
        // retried.
        let Some(before) = live_plan(harness, viewer).await? else { return Ok(None) };
        let expected = plan_bars(&before);
        if !expected.iter().any(|bar| bar.state == "running") {
            return Ok(None);
        }
        let dom = chromium(browser, &profile, &["--dump-dom".into()], &url).await?;
        let after = live_plan(harness, viewer).await?;
        if after.as_ref().map(plan_bars) != Some(expected.clone()) {
            return Ok(None);
        }
        let page = Page::parse(&String::from_utf8_lossy(&dom));
        if page.bars != expected {
            bail!(
                "Gantt bars differ from /v1/plan epoch {}:\n page {:?}\n plan {:?}",
                before.epoch,
                page.bars,
                expected
            );
        }
        Ok(Some(page))
    })
    .await?;

    assert!(page.auth_hidden && page.auth_error.is_empty(), "the right token is accepted: {page:?}");
    assert_eq!(page.agents, agents, "one agent card per agent of the mesh");
    assert_eq!(page.jobs, ids, "one row per job of the sweep");
    let hosts: BTreeSet<&str> = page.bars.iter().map(|bar| bar.host.as_str()).collect();
    assert!(hosts.iter().all(|h| agents.contains(*h)), "bars on unknown hosts: {hosts:?}");

    let shot = artifacts_dir()?.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let args =
        [format!("--screenshot={}", shot.display()), "--window-size=1280,900".into(), "--hide-scrollbars".into()];
    chromium(browser, &profile, &args, &url).await?;
    let png = std::fs::read(&shot).with_context(|| format!("no screenshot at {}", shot.display()))?;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "{} is not a rendered PNG", shot.display());
    println!("dashboard screenshot: {}", shot.display());
    Ok(())
}

/// One bar of the Gantt chart: an assignment on one GPU.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Bar {
    job: String,
    host: String,
    gpu: u32,
    state: String,
}

/// The plan with at least one assignment, or `None` while there is none.
async fn live_plan(harness: &Harness, i: usize) -> Result<Option<PlanView>> {
    let plan: PlanView = harness.client(i).get_json("/v1/plan").await?;
    Ok((!plan.assignments.is_empty()).then_some(plan))
}

/// The bars the plan should draw: one per assignment and GPU.
fn plan_bars(plan: &PlanView) -> BTreeSet<Bar> {
    let mut bars = BTreeSet::new();
    for assignment in &plan.assignments {
        for placement in &assignment.placement {
            for gpu in &placement.gpus {
                bars.insert(Bar {
                    job: assignment.job.clone(),
                    host: placement.host.clone(),
                    gpu: *gpu,
                    state: assignment.state.clone(),
                });
            }
        }
    }
    bars
}

/// What the rendered page shows, read from the dashboard's hook attributes.
#[derive(Debug)]
struct Page {
    agents: BTreeSet<String>,
    jobs: BTreeSet<String>,
    bars: BTreeSet<Bar>,
    /// Whether the token prompt (`form#auth`) is hidden.
    auth_hidden: bool,
    /// The text of `#auth-error` (why a token was refused).
    auth_error: String,
}

impl Page {
    fn parse(html: &str) -> Page {
        let elements = start_tags(html);
        // The dashboard's hooks: `.agent-card[data-agent]`, `tr.job-row[data-job]`,
        // `rect.gantt-bar[data-job][data-host][data-gpu]`.
        let with_class = |tag: Option<&'static str>, class: &'static str| {
            elements
                .iter()
                .filter(move |(name, attrs)| {
                    tag.is_none_or(|t| t == name)
                        && attrs.get("class").is_some_and(|c| c.split_whitespace().any(|w| w == class))
                })
                .map(|(_, attrs)| attrs)
        };
        let agents = with_class(None, "agent-card").filter_map(|a| a.get("data-agent").cloned()).collect();
        let jobs = with_class(Some("tr"), "job-row").filter_map(|a| a.get("data-job").cloned()).collect();
        let bars = with_class(Some("rect"), "gantt-bar")
            .filter_map(|a| {
                let state = a.get("class")?.split_whitespace().find_map(|c| c.strip_prefix("state-"))?.to_string();
                Some(Bar {
                    job: a.get("data-job")?.clone(),
                    host: a.get("data-host")?.clone(),
                    gpu: a.get("data-gpu")?.parse().ok()?,
                    state,
                })
            })
            .collect();
        let auth_hidden = elements
            .iter()
            .any(|(name, attrs)| name == "form" && attrs.get("id").is_some_and(|id| id == "auth") && attrs.contains_key("hidden"));
        let auth_error = html
            .split_once("id=\"auth-error\"")
            .and_then(|(_, rest)| rest.split_once('>'))
            .and_then(|(_, rest)| rest.split_once('<'))
            .map(|(text, _)| unescape(text))
            .unwrap_or_default();
        Page { agents, jobs, bars, auth_hidden, auth_error }
    }
}

/// Every start tag in serialised HTML with its attributes (Chromium's `--dump-dom`
/// output: attribute values double-quoted, `&` and `"` escaped).
fn start_tags(html: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find('<') {
        rest = &rest[at + 1..];
        let name_end = rest.find(|c: char| !c.is_ascii_alphanumeric() && c != '-').unwrap_or(rest.len());
        if name_end == 0 {
            continue; // an end tag, a comment or a doctype
        }
        let tag = rest[..name_end].to_ascii_lowercase();
        rest = &rest[name_end..];
        let mut attrs = BTreeMap::new();
        loop {
            rest = rest.trim_start();
            if rest.is_empty() || rest.starts_with('>') || rest.starts_with("/>") {
                break;
            }
            let name_end =
                rest.find(|c: char| c == '=' || c == '>' || c == '/' || c.is_whitespace()).unwrap_or(rest.len());
            if name_end == 0 {
                rest = &rest[1..]; // a stray '=' or '/': skip it, the tag still ends at '>'
                continue;
            }
            let name = rest[..name_end].to_string();
            rest = &rest[name_end..];
            let value = if let Some(quoted) = rest.strip_prefix("=\"") {
                let end = quoted.find('"').unwrap_or(quoted.len());
                rest = quoted.get(end + 1..).unwrap_or("");
                unescape(&quoted[..end])
            } else if let Some(bare) = rest.strip_prefix('=') {
                let end = bare.find(|c: char| c == '>' || c.is_whitespace()).unwrap_or(bare.len());
                rest = &bare[end..];
                unescape(&bare[..end])
            } else {
                String::new()
            };
            attrs.insert(name, value);
        }
        found.push((tag, attrs));
    }
    found
}

fn unescape(value: &str) -> String {
    value
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Chromium: `$SATURN_CHROMIUM`, else the first of the usual names on `PATH`.
fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SATURN_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Loads `url` in headless Chromium, lets its scripts run for 5 s of virtual time (the
/// clock waits for pending fetches), then does what `args` ask; returns stdout.
async fn chromium(browser: &Path, profile: &Path, args: &[String], url: &str) -> Result<Vec<u8>> {
    let run = tokio::process::Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .args(["--disable-extensions", "--virtual-time-budget=5000"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(40), run)
        .await
        .map_err(|_| anyhow::anyhow!("chromium did not finish in 40 s"))?
        .context("starting chromium")?;
    if !output.status.success() {
        bail!("chromium failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    Ok(output.stdout)
}
