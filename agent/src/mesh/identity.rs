//! The agent's persistent ed25519 identity (`<data_dir>/node.key`).
//!
//! The peer id is derived from this key, and Raft membership names peers by it, so losing
//! or silently replacing the key would make a restarted agent a stranger to its own
//! cluster. Hence: created once with owner-only permissions, written atomically, and a
//! file that fails to parse is an error, never a reason to mint a new identity.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

use super::MeshError;

/// File name of the node key inside the data dir.
pub const NODE_KEY_FILE: &str = "node.key";

/// Path of the node key for a data dir.
pub fn node_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(NODE_KEY_FILE)
}

/// Loads the node key from `data_dir`, creating (and persisting) a fresh one if none exists.
pub fn load_or_create_keypair(data_dir: &Path) -> Result<Keypair, MeshError> {
    let path = node_key_path(data_dir);
    match fs::read(&path) {
        Ok(bytes) => decode(&path, &bytes),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            write_keypair(&path, &keypair)?;
            Ok(keypair)
        }
        Err(source) => Err(key_io(&path, source)),
    }
}

fn decode(path: &Path, bytes: &[u8]) -> Result<Keypair, MeshError> {
    Keypair::from_protobuf_encoding(bytes).map_err(|err| MeshError::CorruptNodeKey {
        path: path.to_owned(),
        reason: err.to_string(),
    })
}

/// Writes `keypair` to `path` (mode 0600).
pub fn write_keypair(path: &Path, keypair: &Keypair) -> Result<(), MeshError> {
    let bytes = keypair
        .to_protobuf_encoding()
        .map_err(|err| MeshError::Build(format!("cannot encode node key: {err}")))?;
    write_private_file(path, &bytes, "node key file")
}

/// Writes a secret to `path` readable only by its owner, atomically: a crash leaves either
/// the old file or the whole new one, never half a key.
pub(crate) fn write_private_file(
    path: &Path,
    bytes: &[u8],
    what: &'static str,
) -> Result<(), MeshError> {
    let io_err = |path: &Path, source| MeshError::KeyFileIo {
        what,
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|source| io_err(dir, source))?;
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    // A leftover from a crash may have other permissions; mode only applies on creation.
    let _ = fs::remove_file(&tmp);
    let mut file = owner_only_file(&tmp).map_err(|source| io_err(&tmp, source))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|source| io_err(&tmp, source))?;
    fs::rename(&tmp, path).map_err(|source| io_err(path, source))
}

#[cfg(unix)]
fn owner_only_file(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn owner_only_file(path: &Path) -> std::io::Result<fs::File> {
    fs::File::create(path)
}

fn key_io(path: &Path, source: std::io::Error) -> MeshError {
    MeshError::KeyFileIo {
        what: "node key file",
        path: path.to_owned(),
        source,
    }
}
