//! What a checkpoint directory holds, and its content digest.
//!
//! The digest is SHA-256 over every regular file in the directory, in byte order of
//! their relative paths (`/`-separated), each as: the path, a 0 byte, its size as 8
//! little-endian bytes, its contents. Two directories with the same files have the same
//! digest on every host, whatever the file system's listing order.
//!
//! A checkpoint directory is refused (and nothing is recorded) when it is missing or
//! empty (the job announced a checkpoint it never wrote), when a symlink in it points
//! outside it or at a directory, or when it is larger than the configured cap.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::CheckpointError;

/// One file of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path relative to the checkpoint directory, `/`-separated.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A checkpoint's contents: its files, total size and digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The files, sorted by path.
    pub files: Vec<ManifestFile>,
    /// Total bytes.
    pub size: u64,
    /// Hex SHA-256 (see the module doc).
    pub digest: String,
}

/// The regular files under `dir` (symlinks to files inside it resolved), sorted by
/// relative path, checked against `cap` bytes in all.
pub fn scan(dir: &Path, cap: u64) -> Result<Vec<(String, PathBuf, u64)>, CheckpointError> {
    let root = dir.canonicalize().map_err(|_| CheckpointError::NotWritten(dir.to_owned()))?;
    let mut found = Vec::new();
    walk(&root, &root, &mut found)?;
    if found.is_empty() {
        return Err(CheckpointError::NotWritten(dir.to_owned()));
    }
    let total: u64 = found.iter().map(|(_, _, size)| size).sum();
    if total > cap {
        return Err(CheckpointError::TooLarge { size: total, cap });
    }
    found.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(found)
}

fn walk(root: &Path, dir: &Path, found: &mut Vec<(String, PathBuf, u64)>) -> Result<(), CheckpointError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| CheckpointError::Io { what: format!("reading {}", path.display()), source }
    };
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        let (target, meta) = if meta.file_type().is_symlink() {
            let target = path.canonicalize().map_err(|_| CheckpointError::Symlink {
                path: path.clone(),
                why: "its target does not exist".into(),
            })?;
            if !target.starts_with(root) {
                return Err(CheckpointError::Symlink { path, why: format!("it points out of the directory, to {}", target.display()) });
            }
            let meta = fs::metadata(&target).map_err(io_err(&target))?;
            if !meta.is_file() {
                return Err(CheckpointError::Symlink { path, why: "it does not point at a regular file".into() });
            }
            (target, meta)
        } else {
            (path.clone(), meta)
        };
        if meta.is_dir() {
            walk(root, &path, found)?;
        } else if meta.is_file() {
            let relative = path.strip_prefix(root).map_err(|_| CheckpointError::Symlink {
                path: path.clone(),
                why: "outside the directory".into(),
            })?;
            let name = relative_name(relative).ok_or_else(|| CheckpointError::BadName(relative.to_owned()))?;
            found.push((name, target, meta.len()));
        }
        // Sockets, fifos and devices are not checkpoint contents.
    }
    Ok(())
}

/// A relative path as a `/`-separated UTF-8 name, if it is a plain one.
fn relative_name(path: &Path) -> Option<String> {
    let parts: Option<Vec<&str>> = path
        .components()
        .map(|c| match c {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect();
    let parts = parts?;
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Whether `name` (from a peer's manifest) is a plain relative path: no `..`, no root,
/// no empty part. Only such names are ever joined to a local directory.
pub fn safe_relative(name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.starts_with('/') || name.contains('\0') {
        return None;
    }
    let parts: Vec<&str> = name.split('/').collect();
    if parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
        return None;
    }
    Some(parts.iter().collect())
}

/// Computes the digest of `files` (relative name, path on disk, size), copying each to
/// `copy_to/<name>` on the way when asked. A file whose size changed while it was read
/// is an error (the job is still writing it).
pub fn digest_files(files: &[(String, PathBuf, u64)], copy_to: Option<&Path>) -> Result<Manifest, CheckpointError> {
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    let mut manifest_files = Vec::with_capacity(files.len());
    for (name, path, size) in files {
        let io_err = |source| CheckpointError::Io { what: format!("reading {}", path.display()), source };
        let mut file = fs::File::open(path).map_err(io_err)?;
        let mut out = match copy_to {
            Some(dir) => {
                let dest = dir.join(safe_relative(name).ok_or_else(|| CheckpointError::BadName(PathBuf::from(name)))?);
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent).map_err(|source| write_err(parent, source))?;
                }
                Some(io::BufWriter::new(fs::File::create(&dest).map_err(|source| write_err(&dest, source))?))
            }
            None => None,
        };
        hasher.update(name.as_bytes());
        hasher.update([0u8]);
        hasher.update(size.to_le_bytes());
        let mut read = 0u64;
        loop {
            let n = file.read(&mut block).map_err(io_err)?;
            if n == 0 {
                break;
            }
            read += n as u64;
            hasher.update(&block[..n]);
            if let Some(out) = out.as_mut() {
                out.write_all(&block[..n]).map_err(|source| write_err(path, source))?;
            }
        }
        if read != *size {
            return Err(CheckpointError::Changing(path.clone()));
        }
        if let Some(out) = out {
            let file = out.into_inner().map_err(|err| write_err(path, err.into_error()))?;
            file.sync_all().map_err(|source| write_err(path, source))?;
        }
        manifest_files.push(ManifestFile { path: name.clone(), size: *size });
    }
    let size = manifest_files.iter().map(|f| f.size).sum();
    Ok(Manifest { files: manifest_files, size, digest: hex::encode(hasher.finalize()) })
}

fn write_err(path: &Path, source: io::Error) -> CheckpointError {
    CheckpointError::Io { what: format!("writing {}", path.display()), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, data: &[u8]) {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }

    #[test]
    fn the_digest_depends_on_names_and_contents_not_on_listing_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        write(a.path(), "x/1", b"one");
        write(a.path(), "2", b"two");
        write(b.path(), "2", b"two");
        write(b.path(), "x/1", b"one");
        let da = digest_files(&scan(a.path(), 100).unwrap(), None).unwrap();
        let db = digest_files(&scan(b.path(), 100).unwrap(), None).unwrap();
        assert_eq!(da, db);
        write(b.path(), "x/1", b"onf");
        assert_ne!(digest_files(&scan(b.path(), 100).unwrap(), None).unwrap().digest, da.digest);
    }

    #[test]
    fn bad_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(scan(&dir.path().join("none"), 10), Err(CheckpointError::NotWritten(_))));
        assert!(matches!(scan(dir.path(), 10), Err(CheckpointError::NotWritten(_))));
        write(dir.path(), "big", &[0; 11]);
        assert!(matches!(scan(dir.path(), 10), Err(CheckpointError::TooLarge { size: 11, cap: 10 })));
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret", b"s");
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
        assert!(matches!(scan(dir.path(), 100), Err(CheckpointError::Symlink { .. })));
    }

    #[test]
    fn a_symlink_inside_is_read_as_its_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "real", b"data");
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("alias")).unwrap();
        let files = scan(dir.path(), 100).unwrap();
        assert_eq!(files.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), ["alias", "real"]);
    }

    #[test]
    fn only_plain_relative_names_are_accepted_from_peers() {
        assert!(safe_relative("a/b.bin").is_some());
        for bad in ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a/"] {
            assert!(safe_relative(bad).is_none(), "{bad}");
        }
    }
}
