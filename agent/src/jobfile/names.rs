//! Rules for the names a job file introduces: job names, techniques, environment
//! variables, grid variables — and a "did you mean" for misspelt keys.

/// Longest job name; names become directory names, which have limits of their own.
pub const MAX_NAME_LEN: usize = 128;

/// Checks a job name (or profile group); `Err` says why it is refused.
///
/// Names become paths (job logs, checkpoints), so only `[A-Za-z0-9._-]`, 1 to 128
/// characters, and no leading `.` (which would allow `..` and hidden files).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "is {} characters long; at most {MAX_NAME_LEN} are allowed",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "contains {bad:?}; names become file names, so only letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    if name.starts_with('.') {
        return Err("must not start with '.'; names become file names".into());
    }
    Ok(())
}

/// Checks a technique name: `[a-z0-9_-]`, 1 to 64 characters.
pub(crate) fn check_technique(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("a technique name must be 1 to 64 characters".into());
    }
    if name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        Ok(())
    } else {
        Err("a technique name may only hold lowercase letters, digits, '_' and '-'".into())
    }
}

/// Whether `name` is an identifier: `[A-Za-z_][A-Za-z0-9_]*` (grid variables, env keys).
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Environment variables the agent sets for every job process (spec/agent.md); a job
/// setting them would silently break placement or resumption.
const AGENT_ENV: &[&str] = &[
    "CUDA_VISIBLE_DEVICES",
    "MASTER_ADDR",
    "MASTER_PORT",
    "WORLD_SIZE",
];

/// `SATURN_*` variables a job's `env` may set: the saturn_train library's own settings
/// (`SATURN_TRAIN_*`, python/README.md) and the gang's rendezvous timeout, which the
/// agent reads back from the job's `env` and enforces.
fn job_may_set(key: &str) -> bool {
    key.starts_with("SATURN_TRAIN_") || key == "SATURN_RENDEZVOUS_TIMEOUT_S"
}

/// Checks an `env` key; `Err` says why it is refused.
pub(crate) fn check_env_key(key: &str) -> Result<(), String> {
    if !is_identifier(key) {
        return Err("an environment variable name must match [A-Za-z_][A-Za-z0-9_]*".into());
    }
    if job_may_set(key) {
        return Ok(());
    }
    if key.starts_with("SATURN_") || AGENT_ENV.contains(&key) {
        return Err("is set by the agent for every job process and cannot be overridden".into());
    }
    Ok(())
}

/// The allowed key closest to a misspelt one, when it is close enough to be a typo.
pub(crate) fn suggestion<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|candidate| (edit_distance(key, candidate), *candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance; keys are short, so the quadratic algorithm is fine.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_must_be_safe_file_names() {
        assert!(check_name("gpt2-bs16-lr1e-4").is_ok());
        assert!(check_name("v1.2_final").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name(".hidden").is_err());
        assert!(check_name("..").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name("with space").is_err());
        assert!(check_name(&"x".repeat(MAX_NAME_LEN)).is_ok());
        assert!(check_name(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn typos_get_a_suggestion() {
        let allowed = ["name", "steps", "techniques", "max_restarts"];
        assert_eq!(suggestion("step", &allowed), Some("steps"));
        assert_eq!(suggestion("technique", &allowed), Some("techniques"));
        assert_eq!(suggestion("max-restarts", &allowed), Some("max_restarts"));
        assert_eq!(suggestion("banana", &allowed), None);
    }

    #[test]
    fn agent_variables_cannot_be_overridden() {
        assert!(check_env_key("HF_HOME").is_ok());
        assert!(check_env_key("SATURN_JOB_ID").is_err());
        assert!(check_env_key("SATURN_TRAINING").is_err());
        assert!(check_env_key("CUDA_VISIBLE_DEVICES").is_err());
        assert!(check_env_key("SATURN_TRAIN_CHECKPOINT_EVERY").is_ok());
        assert!(check_env_key("SATURN_RENDEZVOUS_TIMEOUT_S").is_ok());
        assert!(check_env_key("1BAD").is_err());
    }
}
