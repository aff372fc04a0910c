//! Real PyTorch jobs for end-to-end tests: finding the Python with torch and
//! `saturn_train`, the example model they train, and reading what a job wrote in its
//! attempt logs.
//!
//! The interpreter is `$SATURN_PYTHON`, else `$HOME/.cache/saturn-venv/bin/python`
//! (the venv `.ci/run` creates, with `saturn_train` installed from `python/`). Without
//! one, a test is not run (with a note), except under `CI=true`, where it fails
//! ([`crate::missing_prerequisite`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The interpreter tests should use, whether or not it exists.
pub fn python_path() -> PathBuf {
    match std::env::var_os("SATURN_PYTHON") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
            home.join(".cache/saturn-venv/bin/python")
        }
    }
}

/// A Python that imports torch.distributed and saturn_train, or why there is none.
pub fn python_with_torch() -> Result<PathBuf> {
    let python = python_path();
    let output = Command::new(&python)
        .args(["-c", "import torch, torch.distributed as d, saturn_train; assert d.is_available(); print(torch.__version__)"])
        .output()
        .with_context(|| format!("cannot run {} (set SATURN_PYTHON to a Python with torch)", python.display()))?;
    if !output.status.success() {
        bail!(
            "{} cannot import torch.distributed and saturn_train (pip install ./python): {}",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(python)
}

/// The Python with torch and saturn_train, or `None` after saying why the test does not
/// run; under `CI=true` a missing one fails the test.
pub fn python_or_skip(test: &str) -> Option<PathBuf> {
    match python_with_torch() {
        Ok(python) => Some(python),
        Err(err) => {
            crate::missing_prerequisite(&format!("{test} needs Python with torch and saturn_train: {err:#}"));
            None
        }
    }
}

/// The example GPT of `examples/torch/gpt.py`, trained through saturn_train.
pub fn gpt_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("examples").join("torch").join("gpt.py")
}

/// The log of attempt `attempt` of `job` in an agent's data dir, if that agent ran it.
pub fn attempt_log(data_dir: &Path, job: &str, attempt: u32) -> Option<String> {
    saturn_agent::executor::attempt_logs(data_dir, job)
        .into_iter()
        .filter(|(n, _)| *n == attempt)
        .map(|(_, path)| saturn_agent::executor::read_from(&path, 0, usize::MAX))
        .find_map(|chunk| chunk.ok())
        .map(|chunk| String::from_utf8_lossy(&chunk.data).into_owned())
}

/// The value of `key=` in the saturn_train launcher's line
/// (`saturn_train launcher: technique=ddp trial=False node_rank=0 ...`).
pub fn banner_field<'a>(log: &'a str, key: &str) -> Option<&'a str> {
    let banner = log.lines().find(|line| line.starts_with("saturn_train launcher:"))?;
    let prefix = format!("{key}=");
    banner.split_whitespace().find_map(|word| word.strip_prefix(prefix.as_str()))
}
