//! Reading what users hand pvegpu (inventories, facts files, transcripts, secret and compose
//! files): only regular files, since a FIFO or a device would block or never end; text that
//! is UTF-8, or an error naming the line and byte where it is not; and lines quoted back in
//! messages clipped, so one huge bad line does not flood the terminal.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Callers name what the file is for ("cannot read the inventory ..."), so this says
    /// only what went wrong.
    #[error("{error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{} is not a regular file but {kind}", path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{}: line {line}, byte {byte} (column {column} of that line) is not valid UTF-8", path.display())]
    NotUtf8 {
        path: PathBuf,
        line: usize,
        byte: usize,
        column: usize,
    },
}

impl crate::core::error::Hint for InputError {
    fn hint(&self) -> Option<String> {
        match self {
            InputError::Io { .. } => None,
            InputError::NotRegular { .. } => Some(
                "pvegpu reads only regular files (a FIFO or a device could block forever): give the path of the file itself".into(),
            ),
            InputError::NotUtf8 { path, .. } => Some(format!(
                "save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 {0} > {0}.utf8`",
                path.display()
            )),
        }
    }
}

/// The text of a regular file, checked to be UTF-8.
pub fn read_text(path: &Path) -> Result<String, InputError> {
    let io = |error| InputError::Io {
        path: path.to_path_buf(),
        error,
    };
    // metadata follows a symlink to what it names: a link to a regular file is fine
    let meta = std::fs::metadata(path).map_err(io)?;
    if let Some(kind) = not_regular(&meta) {
        return Err(InputError::NotRegular {
            path: path.to_path_buf(),
            kind,
        });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    text_of(path, bytes)
}

fn not_regular(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_char_device() || t.is_block_device() {
        Some("a device")
    } else {
        Some("not a file")
    }
}

/// `bytes` as text, or where (1-based line, byte offset in the file, column in the line) the
/// first invalid UTF-8 sequence starts. `path` names the source in the error (`-` for stdin).
pub fn text_of(path: &Path, bytes: Vec<u8>) -> Result<String, InputError> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let before = &e.as_bytes()[..at];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        InputError::NotUtf8 {
            path: path.to_path_buf(),
            line: before.iter().filter(|&&b| b == b'\n').count() + 1,
            byte: at,
            column: String::from_utf8_lossy(&before[line_start..])
                .chars()
                .count()
                + 1,
        }
    })
}

/// Longest text quoted back from an input line in a message.
pub const CLIP_CHARS: usize = 120;

/// `line` for an error message: as is when short, else its first [`CLIP_CHARS`] characters
/// and how much was left out.
pub fn clip(line: &str) -> Cow<'_, str> {
    match line.char_indices().nth(CLIP_CHARS) {
        None => Cow::Borrowed(line),
        Some((end, _)) => Cow::Owned(format!(
            "{}… ({} more bytes)",
            &line[..end],
            line.len() - end
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_is_named_by_line_byte_and_column() {
        let e = text_of(Path::new("f.toml"), b"a = 1\nbb = \"\xff\"\n".to_vec()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.toml: line 2, byte 12 (column 7 of that line) is not valid UTF-8"
        );
    }

    #[test]
    fn long_lines_are_clipped_short_ones_kept() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(10_000);
        let c = clip(&long);
        assert!(c.starts_with(&"é".repeat(CLIP_CHARS)));
        assert!(c.ends_with("… (19760 more bytes)"), "{c}");
    }

    #[test]
    fn a_fifo_is_refused_without_opening_it() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("secret");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let e = read_text(&fifo).unwrap_err();
        assert!(
            matches!(e, InputError::NotRegular { kind: "a FIFO", .. }),
            "{e}"
        );
    }
}
