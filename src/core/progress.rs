//! Progress lines for long work, told by executors and shown (or not) by the command layer.

/// Progress lines on stderr; quiet hides them.
pub trait Progress {
    fn say(&self, line: &str);
}
