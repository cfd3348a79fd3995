//! Where the interruption sweeps (#20) cut an executor's step, and the step's script as the
//! cut leaves it. Shared by tests/host_interrupted.rs (the scratch-folder node) and
//! tests/testhost_interrupted.rs (the QEMU test host).
#![allow(dead_code)]

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// The connection drops before the step's script reaches the node.
    Before,
    /// The node's shell dies in the middle of the step.
    Midway,
    /// The step's work is done (a write renamed into place, a command ended), then the
    /// shell dies or the answer is lost.
    After,
}

/// The line of a write script (`scripts::write_file`) that puts the file into place.
const RENAME: &str = "mv -f \"$tmp\" \"$path\"\n";

/// A write's script with the shell killed just before its rename (Midway: the temporary file
/// written, the target untouched) or just after it (After: the answer is lost); any other
/// script, and a Before cut, unchanged.
pub fn cut_write(script: &str, cut: Cut) -> String {
    match cut {
        Cut::Midway => script.replace(RENAME, "kill -KILL $$\n"),
        Cut::After => script.replace(RENAME, &format!("{RENAME}kill -KILL $$\n")),
        Cut::Before => script.to_string(),
    }
}

/// True for a write's script, which [`cut_write`] cuts.
pub fn is_write(script: &str) -> bool {
    script.contains(RENAME)
}
