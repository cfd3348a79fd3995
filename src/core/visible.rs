//! The one sanitiser for text that reaches a person: what a node or guest said (os-release,
//! nvidia-smi, file names, task logs) may hold terminal controls, and a window title, a
//! cleared screen or a line overwritten by `\r` must show as the characters they are, never
//! act. Newlines and tabs stay; every other control character, the C1 controls that some
//! terminals read as escape sequences, and the Unicode marks that reorder text are written as
//! escapes (`\x1b`, `\r`, `\u{9b}`, `\u{202e}`). Every output path uses it: text on stdout
//! and stderr, progress, logs of remote output, and each string of the JSON.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` must not reach a terminal as itself.
fn acts(c: char) -> bool {
    match c {
        '\n' | '\t' => false,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        // bidirectional embeddings, overrides and isolates, which reorder what is shown
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

/// `s` with every character that would act on a terminal written as an escape.
pub fn visible(s: &str) -> Cow<'_, str> {
    if !s.chars().any(acts) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            c if acts(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if acts(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A JSON value with every string in it (keys too) passed through [`visible`]: a consumer
/// that prints a field shows it as safely as pvegpu's own text does.
pub fn visible_json(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(visible(&s).into_owned()),
        Value::Array(a) => Value::Array(a.into_iter().map(visible_json).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (visible(&k).into_owned(), visible_json(v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_show_as_escapes_and_layout_stays() {
        let title = "NVIDIA\x1b]0;owned\x07 L4";
        assert_eq!(visible(title), "NVIDIA\\x1b]0;owned\\x07 L4");
        assert_eq!(
            visible("ok\r✓ all checks passed"),
            "ok\\r✓ all checks passed"
        );
        assert_eq!(visible("\u{9b}2J"), "\\u{9b}2J");
        assert_eq!(visible("a\u{202e}b"), "a\\u{202e}b");
        assert!(matches!(visible("line\n\tindented ✓"), Cow::Borrowed(_)));
        assert_eq!(visible("\x00\x7f"), "\\x00\\x7f");
    }

    #[test]
    fn json_strings_and_keys() {
        let v = serde_json::json!({"os\x1b": ["Debian\x1b[2J", 1, {"k": "\r"}]});
        assert_eq!(
            visible_json(v),
            serde_json::json!({"os\\x1b": ["Debian\\x1b[2J", 1, {"k": "\\r"}]})
        );
    }
}
