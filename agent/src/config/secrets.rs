//! The secret files: the API token (`--api-token-file`, by default `DATA_DIR/api-token`,
//! generated at first start) and the cluster key (`--cluster-key-file`). Like ssh with a
//! private key, a file that group or others may read (or write) is refused: a secret
//! anyone on the host can read protects nothing.

use std::path::Path;

use libp2p::pnet::PreSharedKey;

use super::{ConfigError, Secret};

/// `--api-token-file`, for messages.
pub const TOKEN_FLAG: &str = "--api-token-file";
/// `--cluster-key-file`, for messages.
pub const KEY_FLAG: &str = "--cluster-key-file";
/// The shortest token accepted, in bytes: shorter ones are guessable.
pub const MIN_TOKEN_BYTES: usize = 16;

/// Refuses a secret file whose mode gives group or others any access.
pub fn check_private(path: &Path, flag: &'static str) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::ReadSecret {
        flag,
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::BadSecret {
            flag,
            path: path.to_owned(),
            reason: format!(
                "group or others may read it (mode {mode:03o}); run chmod 600 {}",
                path.display()
            ),
        });
    }
    Ok(())
}

/// Reads a secret file after [`check_private`].
fn read_private(path: &Path, flag: &'static str) -> Result<String, ConfigError> {
    check_private(path, flag)?;
    std::fs::read_to_string(path).map_err(|source| ConfigError::ReadSecret {
        flag,
        path: path.to_owned(),
        source,
    })
}

/// Checks a token's text: one word of at least [`MIN_TOKEN_BYTES`] bytes.
pub fn parse_token(path: &Path, text: &str) -> Result<Secret, ConfigError> {
    let bad = |reason: String| ConfigError::BadSecret {
        flag: TOKEN_FLAG,
        path: path.to_owned(),
        reason,
    };
    let token = text.trim();
    if token.is_empty() {
        return Err(bad("the file is empty; put the bearer token in it".into()));
    }
    if token.contains(char::is_whitespace) {
        return Err(bad(
            "a token must be one word, without spaces or line breaks".into(),
        ));
    }
    if token.len() < MIN_TOKEN_BYTES {
        return Err(bad(format!(
            "the token is {} bytes; at least {MIN_TOKEN_BYTES} are needed (e.g. openssl rand -hex 32)",
            token.len()
        )));
    }
    Ok(Secret(token.to_string()))
}

/// Reads the token file; when it is missing and `generate` (the default path), writes a
/// fresh random token there first, readable by the owner only.
pub fn read_or_generate_token(path: &Path, generate: bool) -> Result<Secret, ConfigError> {
    if generate && !path.exists() {
        let token = hex::encode(rand::random::<[u8; 32]>());
        crate::mesh::identity::write_private_file(path, format!("{token}\n").as_bytes(), "API token file")
            .map_err(|err| ConfigError::BadSecret {
                flag: TOKEN_FLAG,
                path: path.to_owned(),
                reason: format!("cannot write a new token: {err}"),
            })?;
    }
    parse_token(path, &read_private(path, TOKEN_FLAG)?)
}

/// Reads and parses the cluster key file.
pub fn read_cluster_key(path: &Path) -> Result<PreSharedKey, ConfigError> {
    read_private(path, KEY_FLAG)?
        .parse::<PreSharedKey>()
        .map_err(|err| ConfigError::BadSecret {
            flag: KEY_FLAG,
            path: path.to_owned(),
            reason: format!(
                "not a libp2p swarm.key (/key/swarm/psk/1.0.0/, /base16/, 64 hex digits): {err}"
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn short_and_spaced_tokens_are_refused() {
        let path = Path::new("t");
        assert!(parse_token(path, "short-token\n").is_err());
        assert!(parse_token(path, "0123456789abcde").is_err(), "15 bytes");
        assert!(parse_token(path, "0123456789abcdef\n").is_ok(), "16 bytes");
        assert!(parse_token(path, "0123456789 abcdef0123").is_err());
    }

    #[test]
    fn a_token_is_generated_once_owner_only_and_a_readable_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data").join("api-token");
        let first = read_or_generate_token(&path, true).expect("generated");
        let mode = std::fs::metadata(&path).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(first.expose().len(), 64);
        let again = read_or_generate_token(&path, true).expect("read back");
        assert_eq!(first, again, "generated at first start only");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let err = read_or_generate_token(&path, true).expect_err("group-readable").to_string();
        assert!(err.contains("chmod 600"), "{err}");
        let missing = dir.path().join("none");
        assert!(read_or_generate_token(&missing, false).is_err(), "an explicit file is never made up");
    }
}
