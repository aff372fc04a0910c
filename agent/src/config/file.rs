//! The agent's TOML config file: the flags' keys in snake_case, nothing else.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// What a config file may say; every key is optional and an unknown key is an error
/// (a misspelt `data_dri` must not silently fall back to the default).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub name: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub listen: Option<Vec<String>>,
    pub join: Option<Vec<String>>,
    pub bootstrap_expect: Option<u32>,
    pub api: Option<String>,
    pub gpus: Option<String>,
    pub cluster_key_file: Option<PathBuf>,
    pub api_token_file: Option<PathBuf>,
    pub dev: Option<bool>,
    /// `mdns = false` and `no_mdns = true` (the flag's own key) both turn mDNS off.
    pub mdns: Option<bool>,
    pub no_mdns: Option<bool>,
    pub advertise: Option<Vec<String>>,
    pub grace_period_s: Option<u64>,
    pub heartbeat_ms: Option<u64>,
    pub log_level: Option<String>,
    pub replan_interval_s: Option<u64>,
    pub kill_grace_s: Option<u64>,
    pub rendezvous_timeout_s: Option<u64>,
    pub solver: Option<String>,
    pub no_introspection: Option<bool>,
    pub no_early_stop_replan: Option<bool>,
    pub checkpoint_root: Option<PathBuf>,
    pub checkpoint_replicas: Option<u32>,
    pub checkpoint_max_mib: Option<u64>,
    pub checkpoint_rate_mib_s: Option<u64>,
    pub insecure_open_mesh: Option<bool>,
}

/// Parses a config file's text; `path` names it in errors and anchors relative paths:
/// `data_dir`, `cluster_key_file` and `api_token_file` in a file are relative to the
/// file's directory, so the agent finds them whatever directory it is started from.
pub(crate) fn parse(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    let mut file: FileConfig = toml::from_str(text).map_err(|err| {
        let line = err
            .span()
            .map(|span| 1 + text.get(..span.start).unwrap_or(text).matches('\n').count());
        ConfigError::ConfigFileSyntax {
            path: path.to_owned(),
            line,
            message: err.message().trim().to_string(),
        }
    })?;
    if let (Some(mdns), Some(no_mdns)) = (file.mdns, file.no_mdns) {
        if mdns == no_mdns {
            return Err(ConfigError::ConfigFileSyntax {
                path: path.to_owned(),
                line: None,
                message: "mdns and no_mdns contradict each other; keep one".into(),
            });
        }
    }
    let base = path.parent().unwrap_or(Path::new(""));
    for relative in [
        &mut file.data_dir,
        &mut file.cluster_key_file,
        &mut file.api_token_file,
        &mut file.checkpoint_root,
    ]
    .into_iter()
    .flatten()
    {
        if relative.is_relative() {
            *relative = base.join(&*relative);
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_names_the_key_the_file_and_the_line() {
        let err = parse(
            Path::new("/etc/saturn/agent.toml"),
            "name = \"a\"\ndata_dri = \"/x\"\n",
        )
        .expect_err("typo");
        let message = err.to_string();
        assert!(
            message
                .starts_with("config file /etc/saturn/agent.toml line 2: unknown field `data_dri`"),
            "{message}"
        );
    }

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let file = parse(
            Path::new("/etc/saturn/agent.toml"),
            "data_dir = \"data\"\napi_token_file = \"/abs/token\"\n",
        )
        .expect("valid");
        assert_eq!(file.data_dir, Some(PathBuf::from("/etc/saturn/data")));
        assert_eq!(file.api_token_file, Some(PathBuf::from("/abs/token")));
    }
}
