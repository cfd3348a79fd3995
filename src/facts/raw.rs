//! The probe's output, split into its sections. This text is also the saved facts file, so it
//! must stay easy to assemble by hand: `### pvegpu <section> [argument]`, the command's output,
//! and optionally `### pvegpu exit <status>`.

use crate::core::input::clip;
use std::collections::BTreeMap;

pub const MARKER: &str = "### pvegpu ";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RawError {
    #[error(
        "line {line}: `{}` is not a pvegpu facts header; expected `### pvegpu facts {FORMAT_VERSION}` before any section",
        clip(text)
    )]
    MissingHeader { line: usize, text: String },
    #[error(
        "facts format version {} is not supported (this pvegpu reads version {FORMAT_VERSION}); gather the facts again with this pvegpu",
        clip(found)
    )]
    Version { found: String },
    #[error("line {line}: `{}` has no section name after `### pvegpu`", clip(text))]
    EmptyMarker { line: usize, text: String },
    #[error("line {line}: `### pvegpu exit {}` is not a number", clip(value))]
    BadExit { line: usize, value: String },
    #[error(
        "line {line}: section `{key}` is given a second time with different content (first at line {first}); one facts file describes one node at one time, so pvegpu does not pick one: keep the section that is current and delete the other"
    )]
    Conflict {
        line: usize,
        first: usize,
        key: String,
    },
    #[error(
        "line {line}: section `{name}` is marked enc=base64 but its body is not base64; gather the facts again"
    )]
    BadBase64 { line: usize, name: String },
}

/// Sections that may appear once per argument (one per file, per kernel...); every other
/// section describes the whole node and may appear once.
const PER_ARGUMENT: &[&str] = &["file", "initramfs", "cdi", "compose", "onnx"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    /// What follows the name on the marker line, e.g. the path of a `file` section.
    pub arg: String,
    pub body: String,
    /// `None` when the section was assembled by hand without an exit line.
    pub exit: Option<i32>,
    /// 1-based line number of the marker, for error messages.
    pub line: usize,
}

impl Section {
    /// True when the command ran and succeeded (or the exit status was not recorded).
    pub fn ok(&self) -> bool {
        self.exit.is_none_or(|rc| rc == 0)
    }

    /// Key/value words on the marker line after the first word (`mode=644 owner=root:root`).
    pub fn attrs(&self) -> BTreeMap<&str, &str> {
        self.arg
            .split_whitespace()
            .skip(1)
            .filter_map(|w| w.split_once('='))
            .collect()
    }

    pub fn first_arg(&self) -> &str {
        self.arg.split_whitespace().next().unwrap_or("")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawFacts {
    pub sections: Vec<Section>,
}

impl RawFacts {
    pub fn parse(text: &str) -> Result<Self, RawError> {
        let mut sections: Vec<Section> = Vec::new();
        let mut seen_header = false;
        let mut current: Option<Section> = None;
        for (idx, line) in text.lines().enumerate() {
            let lineno = idx + 1;
            let Some(rest) = line
                .strip_prefix(MARKER)
                .or_else(|| (line == MARKER.trim_end()).then_some(""))
            else {
                if let Some(section) = current.as_mut() {
                    // output without a final newline (curl's answer, a file that lacks one)
                    // carries the exit marker at the end of its last line
                    if let Some((last, rc)) = glued_exit(line) {
                        section.body.push_str(last);
                        section.exit = Some(rc);
                        sections.extend(current.take());
                    } else {
                        section.body.push_str(line);
                        section.body.push('\n');
                    }
                } else if seen_header || line.trim().is_empty() || line.starts_with('#') {
                    // comments and blank lines before the first section are allowed
                } else {
                    return Err(RawError::MissingHeader {
                        line: lineno,
                        text: line.to_string(),
                    });
                }
                continue;
            };
            let rest = rest.trim();
            let (name, arg) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            if name.is_empty() {
                return Err(RawError::EmptyMarker {
                    line: lineno,
                    text: line.to_string(),
                });
            }
            match name {
                "facts" => {
                    if arg.trim() != FORMAT_VERSION.to_string() {
                        return Err(RawError::Version {
                            found: arg.trim().to_string(),
                        });
                    }
                    seen_header = true;
                }
                "exit" => {
                    let value = arg.trim();
                    let rc = value.parse().map_err(|_| RawError::BadExit {
                        line: lineno,
                        value: value.to_string(),
                    })?;
                    if let Some(mut section) = current.take() {
                        section.exit = Some(rc);
                        sections.push(section);
                    }
                }
                _ => {
                    if !seen_header {
                        return Err(RawError::MissingHeader {
                            line: lineno,
                            text: line.to_string(),
                        });
                    }
                    if let Some(section) = current.take() {
                        sections.push(section);
                    }
                    current = Some(Section {
                        name: name.to_string(),
                        arg: arg.trim().to_string(),
                        body: String::new(),
                        exit: None,
                        line: lineno,
                    });
                }
            }
        }
        if let Some(section) = current.take() {
            sections.push(section);
        }
        if !seen_header {
            return Err(RawError::MissingHeader {
                line: 1,
                text: text.lines().next().unwrap_or("").to_string(),
            });
        }
        for s in &mut sections {
            decode(s)?;
        }
        Ok(RawFacts {
            sections: without_repeats(sections)?,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Section> + 'a {
        self.sections.iter().filter(move |s| s.name == name)
    }

    /// The body of a section whose command succeeded.
    pub fn ok_body(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|s| s.ok()).map(|s| s.body.as_str())
    }

    /// A one-line answer (`uname -r`), trimmed; None when it failed or printed nothing.
    pub fn ok_line(&self, name: &str) -> Option<String> {
        self.ok_body(name)
            .map(|b| b.trim().to_string())
            .filter(|l| !l.is_empty())
    }
}

/// A section the probe sent base64-encoded (`enc=base64` on its marker: output a user can
/// write, which must not be able to pose as a marker) is decoded here, so every parser reads
/// plain text. Invalid UTF-8 is replaced, as for any other output.
fn decode(s: &mut Section) -> Result<(), RawError> {
    use base64::Engine;
    if s.attrs().get("enc") != Some(&"base64") && s.arg != "enc=base64" {
        return Ok(());
    }
    let packed: String = s.body.split_whitespace().collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(packed)
        .map_err(|_| RawError::BadBase64 {
            line: s.line,
            name: s.name.clone(),
        })?;
    s.body = String::from_utf8_lossy(&bytes).into_owned();
    Ok(())
}

/// `<output>### pvegpu exit <status>`: the marker printed right after output that did not end
/// its line.
fn glued_exit(line: &str) -> Option<(&str, i32)> {
    let at = line.rfind(MARKER)?;
    let rc = line[at..].strip_prefix(MARKER)?.strip_prefix("exit ")?;
    Some((&line[..at], rc.trim_end().parse().ok()?))
}

/// A section given twice is kept once when both copies agree (a paste repeated), and refused
/// when they differ: taking either would be a guess about which one is true.
fn without_repeats(sections: Vec<Section>) -> Result<Vec<Section>, RawError> {
    let mut seen: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut out: Vec<Section> = Vec::with_capacity(sections.len());
    for s in sections {
        let key = if PER_ARGUMENT.contains(&s.name.as_str()) {
            format!("{} {}", s.name, s.first_arg())
        } else {
            s.name.clone()
        };
        match seen.get(&key) {
            Some(&(first, index)) => {
                let kept = &out[index];
                if kept.body != s.body || kept.arg != s.arg || kept.exit != s.exit {
                    return Err(RawError::Conflict {
                        line: s.line,
                        first,
                        key,
                    });
                }
            }
            None => {
                seen.insert(key, (s.line, out.len()));
                out.push(s);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_sections_are_decoded_and_bad_ones_named() {
        // "a: 1\n### pvegpu exit 0\n" as `base64` prints it
        let text = "### pvegpu facts 1\n### pvegpu compose /home/u/compose.yaml enc=base64\nYTogMQojIyMgcHZlZ3B1IGV4aXQgMAo=\n### pvegpu exit 0\n### pvegpu models  enc=base64\nbTEKbTIK\n### pvegpu exit 0\n";
        let raw = RawFacts::parse(text).unwrap();
        let c = raw.get("compose").unwrap();
        assert_eq!(c.first_arg(), "/home/u/compose.yaml");
        assert_eq!(c.body, "a: 1\n### pvegpu exit 0\n");
        assert_eq!(raw.ok_body("models"), Some("m1\nm2\n"));
        let bad = "### pvegpu facts 1\n### pvegpu cdi /etc/cdi/a.yaml enc=base64\nnot base64!\n";
        assert_eq!(
            RawFacts::parse(bad),
            Err(RawError::BadBase64 {
                line: 2,
                name: "cdi".into()
            })
        );
    }

    #[test]
    fn an_answer_without_a_final_newline_still_ends_its_section() {
        // what the verify probe prints for a real Triton server: curl adds no newline
        let text = "### pvegpu facts 1\n### pvegpu triton-ready\n400### pvegpu exit 0\n### pvegpu triton-index\n[{\"name\":\"m\",\"state\":\"READY\"}]### pvegpu exit 0\n### pvegpu models\nm\n### pvegpu exit 0\n### pvegpu cdi /etc/cdi/a.yaml\nkind: x### pvegpu exit 3\n";
        let raw = RawFacts::parse(text).unwrap();
        assert_eq!(raw.ok_body("triton-ready"), Some("400"));
        assert_eq!(
            raw.ok_body("triton-index"),
            Some("[{\"name\":\"m\",\"state\":\"READY\"}]")
        );
        assert_eq!(raw.ok_body("models"), Some("m\n"));
        let cdi = raw.get("cdi").unwrap();
        assert_eq!((cdi.body.as_str(), cdi.exit), ("kind: x", Some(3)));
    }

    #[test]
    fn splits_sections_with_and_without_exit_lines() {
        let text = "# saved by hand\n### pvegpu facts 1\n### pvegpu uname\n6.8.12-10-pve\n### pvegpu exit 0\n### pvegpu file /etc/modules mode=644 owner=root:root\nvfio\n### pvegpu lspci\n02:00.0 VGA\n";
        let raw = RawFacts::parse(text).unwrap();
        assert_eq!(raw.sections.len(), 3);
        assert_eq!(raw.ok_body("uname"), Some("6.8.12-10-pve\n"));
        let file = raw.get("file").unwrap();
        assert_eq!(file.first_arg(), "/etc/modules");
        assert_eq!(file.attrs().get("mode"), Some(&"644"));
        assert_eq!(file.exit, None);
        assert_eq!(raw.get("lspci").unwrap().line, 8);
    }

    #[test]
    fn failed_commands_keep_their_output_but_are_not_ok() {
        let raw = RawFacts::parse("### pvegpu facts 1\n### pvegpu pveversion\nbash: pveversion: command not found\n### pvegpu exit 127\n").unwrap();
        let s = raw.get("pveversion").unwrap();
        assert!(!s.ok());
        assert_eq!(raw.ok_body("pveversion"), None);
    }

    #[test]
    fn a_section_given_twice_is_refused_unless_both_agree() {
        let twice = |a: &str, b: &str| {
            RawFacts::parse(&format!(
                "### pvegpu facts 1\n### pvegpu uname\n{a}\n### pvegpu lspci\n\n### pvegpu uname\n{b}\n"
            ))
        };
        assert_eq!(
            twice("6.8.12-1-pve", "6.8.12-1-pve")
                .unwrap()
                .sections
                .len(),
            2
        );
        let err = twice("6.8.12-1-pve", "6.8.12-9-pve").unwrap_err();
        assert_eq!(
            err,
            RawError::Conflict {
                line: 6,
                first: 2,
                key: "uname".into()
            }
        );
        assert!(
            err.to_string().starts_with("line 6: section `uname`"),
            "{err}"
        );
        let nodes = RawFacts::parse("### pvegpu facts 1\n### pvegpu node a\n### pvegpu node b\n");
        assert!(
            matches!(nodes, Err(RawError::Conflict { line: 3, .. })),
            "{nodes:?}"
        );
        let files = RawFacts::parse(
            "### pvegpu facts 1\n### pvegpu file /etc/a\nx\n### pvegpu file /etc/b\ny\n",
        );
        assert_eq!(files.unwrap().sections.len(), 2);
    }

    #[test]
    fn refuses_text_that_is_not_facts() {
        assert!(matches!(
            RawFacts::parse("hello\n"),
            Err(RawError::MissingHeader { line: 1, .. })
        ));
        assert!(matches!(
            RawFacts::parse("### pvegpu facts 9\n"),
            Err(RawError::Version { .. })
        ));
        assert!(matches!(
            RawFacts::parse("### pvegpu facts 1\n### pvegpu uname\n### pvegpu exit x\n"),
            Err(RawError::BadExit { line: 3, .. })
        ));
    }
}
