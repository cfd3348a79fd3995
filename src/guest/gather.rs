//! Gathering guest facts: the guest probe over any [`Remote`] in one round trip, then, when
//! the model repository holds ONNX models, their headers (one more round trip for all of
//! them, a second only for models whose graph is larger than the first read). The headers are
//! appended to the probe's text as `onnx` sections, so the saved text plans offline exactly as
//! the live guest.

use super::facts::{GuestFacts, OnnxHeader, onnx_section, probe_script};
use super::onnx_check::{self, Field};
use crate::facts::raw::RawFacts;
use crate::transport::Remote;
use anyhow::{Context, Result};
use std::path::Path;

/// How many bytes of a model one read fetches.
pub const ONNX_CHUNK: usize = 64 * 1024;
/// Reads per model at most (each is one round trip for every model still being read).
const ONNX_ROUNDS: usize = 8;

#[derive(Debug)]
pub struct GuestGathered {
    /// The probe's output with the `onnx` sections added: what `--save` writes.
    pub raw_text: String,
    pub facts: GuestFacts,
}

pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Run `script` as root: directly when the login is root, else through passwordless sudo
/// (cloud-init's default user has it). Without either the script does not run (exit 5).
pub fn as_root(script: &str) -> String {
    let q = quote(script);
    format!(
        "if [ \"$(id -u)\" = 0 ]; then exec sh -c {q}; fi\n\
         if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then exec sudo -n sh -c {q}; fi\n\
         echo \"pvegpu: $(id -un) is not root on $(hostname) and cannot sudo without a password; pvegpu needs root there (NOPASSWD sudo, as cloud-init gives its user)\" >&2\n\
         exit 5\n"
    )
}

/// Run `script` as root where possible (some facts, e.g. other users' containers, need it),
/// else as the login user: the probe only reads.
pub fn as_root_if_possible(script: &str) -> String {
    let q = quote(script);
    format!(
        "if [ \"$(id -u)\" != 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then exec sudo -n sh -c {q}; fi\nexec sh -c {q}\n"
    )
}

/// Parse a guest's probe text (with any `onnx` sections) into facts.
pub fn from_text(guest: &str, origin: &str, text: String) -> Result<GuestGathered> {
    let raw = RawFacts::parse(&text)
        .with_context(|| format!("cannot read the guest facts of {guest} from {origin}"))?;
    let facts = GuestFacts::from_raw(&raw)
        .with_context(|| format!("incomplete guest facts for {guest} from {origin}"))?;
    Ok(GuestGathered {
        raw_text: text,
        facts,
    })
}

/// A saved guest facts file.
pub fn from_file(guest: &str, path: &Path) -> Result<GuestGathered> {
    let text = crate::core::input::read_text(path)
        .with_context(|| format!("cannot read the guest facts file {}", path.display()))?;
    from_text(guest, &path.display().to_string(), text)
}

/// Run the probe on the guest, read every listed ONNX model's header, and parse.
pub async fn probe<R: Remote>(
    guest: &str,
    remote: &R,
    model_repository: Option<&str>,
) -> Result<GuestGathered> {
    let out = remote
        .run_script(&as_root_if_possible(&probe_script(model_repository)))
        .await
        .with_context(|| format!("cannot gather the facts of guest {guest}"))?;
    if out.stdout.trim().is_empty() {
        anyhow::bail!(
            "the guest probe printed nothing on {guest} (exit {:?}): {}",
            out.status,
            out.stderr.trim()
        );
    }
    let mut text = out.stdout;
    let raw = RawFacts::parse(&text)
        .with_context(|| format!("cannot read the guest facts of {guest}"))?;
    let models: Vec<String> = match raw.get("model-repository").filter(|s| s.ok()) {
        Some(s) => super::parse::model_files(s.first_arg(), &s.body)
            .into_iter()
            .map(|m| m.path)
            .collect(),
        None => Vec::new(),
    };
    if !models.is_empty() {
        let headers = read_onnx_headers(remote, &models, ONNX_CHUNK)
            .await
            .with_context(|| format!("cannot read the ONNX models on guest {guest}"))?;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        for h in &headers {
            text.push_str(&onnx_section(h));
        }
    }
    from_text(guest, remote.destination(), text)
}

/// One model being read: the top-level fields kept so far and where to read next.
struct Reading {
    kept: Vec<u8>,
    next: Option<u64>,
}

/// The script that prints `count` bytes of each file from its offset, as hex.
fn read_script(files: &[(usize, &str, u64)], count: usize) -> String {
    // a user who can write to the repository may swap a model for a link or a FIFO after
    // it was listed: GNU dd's nofollow and nonblock make either a failed or an empty read,
    // never a read of another file or a wait
    let mut s = String::from("export LC_ALL=C\nt=$(mktemp) || exit 1\ntrap 'rm -f \"$t\"' EXIT\n");
    for (i, path, offset) in files {
        s.push_str(&format!(
            "echo '#pvegpu-chunk {i}'\nif dd if={} iflag=nofollow,nonblock,skip_bytes,count_bytes skip={offset} count={count} bs=65536 status=none >\"$t\"; then od -An -v -tx1 \"$t\"; else echo '#pvegpu-failed {i}'; fi\n",
            quote(path)
        ));
    }
    s
}

/// `#pvegpu-chunk N` followed by hex lines, per file.
fn parse_chunks(out: &str) -> Result<Vec<(usize, Vec<u8>)>> {
    let mut chunks: Vec<(usize, Vec<u8>)> = Vec::new();
    for line in out.lines() {
        if let Some(i) = line.strip_prefix("#pvegpu-chunk ") {
            chunks.push((i.trim().parse()?, Vec::new()));
        } else if let Some(i) = line.strip_prefix("#pvegpu-failed ") {
            anyhow::bail!("reading model {} failed", i.trim());
        } else if let Some((_, bytes)) = chunks.last_mut() {
            for h in line.split_whitespace() {
                bytes.push(
                    u8::from_str_radix(h, 16)
                        .with_context(|| format!("unexpected output {line:?}"))?,
                );
            }
        }
    }
    Ok(chunks)
}

/// Walk the top-level protobuf fields of `chunk` (read at `offset`): keep every complete field
/// but the graph (7), and say where to read next. A field that does not fit is skipped when
/// pvegpu does not read it (the graph, docs, metadata), else read again from its start.
fn walk_chunk(chunk: &[u8], offset: u64, full: bool, kept: &mut Vec<u8>) -> Option<u64> {
    let mut pos = 0usize;
    while pos < chunk.len() {
        let start = pos;
        let (field, end) = match onnx_check::next_field(chunk, &mut pos) {
            Field::At { number, end } => (number, end),
            Field::Cut => return full.then_some(offset + start as u64),
            // groups and unknown wire types: not an ONNX model; let the decoder say so
            Field::Foreign => {
                kept.extend_from_slice(&chunk[start..]);
                return None;
            }
        };
        if end > chunk.len() as u64 {
            if !full {
                // the file ends inside this field: hand the truncated field to the decoder
                kept.extend_from_slice(&chunk[start..]);
                return None;
            }
            return Some(if matches!(field, 1 | 2 | 8) {
                offset + start as u64
            } else {
                offset + end
            });
        }
        if field != 7 {
            kept.extend_from_slice(&chunk[start..end as usize]);
        }
        pos = end as usize;
    }
    // a full chunk may end exactly at a field boundary with more to come
    full.then_some(offset + chunk.len() as u64)
}

/// Read the header (IR version, producer, opsets) of every model without fetching the graph:
/// the first `chunk` bytes of each, then from the end of the graph where it did not fit.
pub async fn read_onnx_headers<R: Remote>(
    remote: &R,
    paths: &[String],
    chunk: usize,
) -> Result<Vec<OnnxHeader>> {
    let mut reading: Vec<Reading> = paths
        .iter()
        .map(|_| Reading {
            kept: Vec::new(),
            next: Some(0),
        })
        .collect();
    for _ in 0..ONNX_ROUNDS {
        let pending: Vec<(usize, &str, u64)> = reading
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.next.map(|o| (i, paths[i].as_str(), o)))
            .collect();
        if pending.is_empty() {
            break;
        }
        let out = remote
            .run_script(&as_root_if_possible(&read_script(&pending, chunk)))
            .await?;
        let chunks = parse_chunks(&out.stdout).with_context(|| {
            format!(
                "the guest answered the model read with exit {:?}: {}",
                out.status,
                out.stderr.trim()
            )
        })?;
        for (i, path, offset) in &pending {
            let Some((_, bytes)) = chunks.iter().find(|(n, _)| n == i) else {
                anyhow::bail!("the guest did not return the bytes of {path}");
            };
            let r = &mut reading[*i];
            let next = walk_chunk(bytes, *offset, bytes.len() == chunk, &mut r.kept);
            // no progress means one field pvegpu needs is larger than a chunk
            r.next = next.filter(|n| *n > *offset);
        }
    }
    paths
        .iter()
        .zip(&reading)
        .map(|(path, r)| Ok(onnx_check::read_header(path, &r.kept)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_graph_is_skipped_and_the_opsets_after_it_are_kept() {
        // ir 8, producer "p", a 300-byte graph, opset {"" 17}
        let mut m = vec![0x08, 8, 0x12, 1, b'p', 0x3a, 0xac, 0x02];
        m.extend(std::iter::repeat_n(0u8, 300));
        m.extend([0x42, 4, 0x0a, 0, 0x10, 17]);
        let mut kept = Vec::new();
        // a 64-byte first read ends inside the graph: the next read starts after it
        let next = walk_chunk(&m[..64], 0, true, &mut kept).unwrap();
        assert_eq!(next, 8 + 300);
        assert_eq!(kept, vec![0x08, 8, 0x12, 1, b'p']);
        let tail = &m[next as usize..];
        assert_eq!(walk_chunk(tail, next, false, &mut kept), None);
        let h = onnx_check::read_header("m.onnx", &kept).unwrap();
        assert_eq!((h.ir_version, h.opset), (8, 17));
    }

    #[test]
    fn a_needed_field_cut_by_the_chunk_is_read_again_from_its_start() {
        let m = [0x08, 8, 0x42, 4, 0x0a, 0, 0x10, 17];
        let mut kept = Vec::new();
        assert_eq!(walk_chunk(&m[..4], 0, true, &mut kept), Some(2));
        assert_eq!(kept, vec![0x08, 8]);
    }

    #[test]
    fn hex_chunks_parse_and_failures_are_errors() {
        let c = parse_chunks("#pvegpu-chunk 1\n 08 0a\n 12\n#pvegpu-chunk 0\n").unwrap();
        assert_eq!(c, vec![(1, vec![8, 10, 0x12]), (0, vec![])]);
        assert!(parse_chunks("#pvegpu-chunk 0\n#pvegpu-failed 0\n").is_err());
    }

    #[test]
    fn root_wrappers_quote_the_script() {
        let s = as_root("echo 'x'");
        assert!(s.contains(r"sh -c 'echo '\''x'\'''"), "{s}");
        assert!(s.contains("exit 5"));
    }
}
