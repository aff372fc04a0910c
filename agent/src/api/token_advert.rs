//! How the `saturn` CLI on the agent's host finds the API token without being told.
//!
//! The agent writes, for its API port, a small file naming its token file's path into a
//! directory only its user can open: `$SATURN_RUNTIME_DIR`, else
//! `$XDG_RUNTIME_DIR/saturn`, else `~/.saturn/run` (made 0700; the file 0600). The CLI
//! talking to a loopback address reads that file, then the token file it names.
//!
//! Why a pointer in a private directory, and not an API endpoint or a copy of the token:
//! anything the agent serves over HTTP without a token is served to every local user, so
//! it must not lead to the token; a second copy of the secret would be a second file to
//! protect. The pointer reveals only a path, the token file keeps its own 0600 mode, and
//! only the agent's user (or root) can read either: exactly who may submit. To let a
//! group submit, the operator gives its members a copy of the token (`--token-file`).
//! The agent removes its pointer on a clean stop; a stale one after a crash names a file
//! the next start reuses (same data dir) or that fails with 401 and a message naming it.

use std::path::{Path, PathBuf};

/// The directory of pointer files for this user, when one can be named.
pub fn runtime_dir() -> Option<PathBuf> {
    let var = |key: &str| std::env::var_os(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("SATURN_RUNTIME_DIR")
        .or_else(|| var("XDG_RUNTIME_DIR").map(|dir| dir.join("saturn")))
        .or_else(|| var("HOME").map(|home| home.join(".saturn").join("run")))
}

/// The pointer file for the API on `port`, inside `dir`.
pub fn pointer_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!("api-{port}.token-path"))
}

/// A written pointer; removed again when dropped (the agent's clean stop).
#[derive(Debug)]
pub struct Advert {
    path: PathBuf,
}

impl Drop for Advert {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes the pointer from the API's `port` to `token_file` (made absolute).
pub fn advertise(dir: &Path, port: u16, token_file: &Path) -> std::io::Result<Advert> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    // An existing directory keeps its mode: make sure it is private before writing.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let absolute = std::path::absolute(token_file)?;
    let path = pointer_path(dir, port);
    crate::mesh::identity::write_private_file(&path, absolute.as_os_str().as_encoded_bytes(), "API token pointer")
        .map_err(std::io::Error::other)?;
    Ok(Advert { path })
}

/// The token file the agent on `port` advertised in `dir`, if any.
pub fn lookup(dir: &Path, port: u16) -> Option<PathBuf> {
    let text = std::fs::read_to_string(pointer_path(dir, port)).ok()?;
    let path = PathBuf::from(text.trim());
    path.is_absolute().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_pointer_is_private_found_by_port_and_removed_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = dir.path().join("run");
        let token = dir.path().join("api-token");
        let advert = advertise(&run, 7171, &token).expect("written");
        let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode(&run), 0o700);
        assert_eq!(mode(&pointer_path(&run, 7171)), 0o600);
        assert_eq!(lookup(&run, 7171), Some(token));
        assert_eq!(lookup(&run, 7172), None);
        drop(advert);
        assert_eq!(lookup(&run, 7171), None);
    }
}
