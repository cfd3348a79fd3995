//! Files pvegpu writes on the operator's machine (saved facts, man pages, its own state such as
//! the guests' host keys). A planted symbolic link is never followed, a reader never sees half
//! a file, and the mode is the one given, not the umask's.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LocalFsError {
    #[error("{} is a symbolic link; pvegpu does not write through links", .0.display())]
    Symlink(PathBuf),
    #[error("{} exists and is not a {what}", .path.display())]
    NotKind { path: PathBuf, what: &'static str },
    #[error("cannot write {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl crate::core::error::Hint for LocalFsError {
    fn hint(&self) -> Option<String> {
        match self {
            LocalFsError::Symlink(p) => Some(format!(
                "name the real file instead (`readlink -f {}` shows where the link points), or remove the link",
                p.display()
            )),
            LocalFsError::NotKind { .. } => Some("name another path".into()),
            LocalFsError::Io { .. } => None,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LocalFsError + '_ {
    move |source| LocalFsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What is at `path` without following a link there; `None` when nothing is.
fn existing(path: &Path) -> Result<Option<std::fs::Metadata>, LocalFsError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(LocalFsError::Symlink(path.to_path_buf())),
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// `contents` at `path` with `mode`: written to a new file beside it (created exclusively, so
/// no link is followed), synced, then renamed over it. A link at `path` is refused.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), LocalFsError> {
    if let Some(m) = existing(path)?
        && !m.is_file()
    {
        return Err(LocalFsError::NotKind {
            path: path.to_path_buf(),
            what: "regular file",
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let (tmp, mut file) = new_temporary(dir, &name, mode)?;
    let written = file
        .write_all(contents)
        .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(mode)))
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(path)(e));
    }
    Ok(())
}

/// A file no one else has opened: `O_CREAT|O_EXCL` on a name not taken yet.
fn new_temporary(
    dir: &Path,
    name: &str,
    mode: u32,
) -> Result<(PathBuf, std::fs::File), LocalFsError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut last = None;
    for attempt in 0..16u32 {
        let tmp = dir.join(format!(
            ".{name}.pvegpu-{}-{nanos:x}-{attempt}",
            std::process::id()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(io(dir)(e)),
        }
    }
    Err(io(dir)(
        last.unwrap_or_else(|| std::io::Error::other("no free name")),
    ))
}

/// A folder only its owner can enter, made with mode 0700 before anything is written in it.
/// An existing one is kept, its mode narrowed to 0700; a link there is refused.
pub fn private_dir(path: &Path) -> Result<(), LocalFsError> {
    match existing(path)? {
        Some(m) if !m.is_dir() => Err(LocalFsError::NotKind {
            path: path.to_path_buf(),
            what: "directory",
        }),
        Some(m) => {
            if m.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
                    .map_err(io(path))?;
            }
            Ok(())
        }
        None => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(io(path)),
    }
}

/// Where pvegpu keeps its own state on this machine: `$PVEGPU_STATE_DIR`, else
/// `$XDG_STATE_HOME/pvegpu`, else `~/.local/state/pvegpu`.
pub fn state_dir() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    std::env::var_os("PVEGPU_STATE_DIR")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("XDG_STATE_HOME")
                .and_then(absolute)
                .map(|p| p.join("pvegpu"))
        })
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".local/state/pvegpu"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_a_file_with_the_mode_given() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("facts.txt");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        write_atomic(&p, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // nothing left beside it
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_planted_link_is_refused_and_its_target_untouched() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let link = d.path().join("facts.txt");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = write_atomic(&link, b"x", 0o600).unwrap_err();
        assert!(matches!(e, LocalFsError::Symlink(_)), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        // a dangling link too: nothing is created where it points
        let dangling = d.path().join("dangling");
        std::os::unix::fs::symlink(d.path().join("nowhere"), &dangling).unwrap();
        assert!(write_atomic(&dangling, b"x", 0o600).is_err());
        assert!(!d.path().join("nowhere").exists());
    }

    #[test]
    fn private_dirs_are_0700_and_links_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b");
        private_dir(&p).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o700);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&p).unwrap();
        assert_eq!(mode(&p), 0o700);
        let link = d.path().join("l");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(matches!(
            private_dir(&link).unwrap_err(),
            LocalFsError::Symlink(_)
        ));
    }
}
