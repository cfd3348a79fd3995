//! Progress for long work, told by executors and shown (or not) by the command layer: lines,
//! and tasks that are shown with their elapsed time until they end.

use crate::core::plan::{Action, Change};
use std::sync::{Arc, Mutex};

/// Progress on stderr; quiet hides it.
pub trait Progress {
    fn say(&self, line: &str);

    /// Work that may take long (a step on a node, a reboot, a task): shown until
    /// [`Task::done`] with its elapsed time. The default says `what` once.
    fn begin(&self, what: &str) -> Task {
        self.say(what);
        Task::silent()
    }
}

/// A task shown by a [`Progress`]; ending it (or dropping it, which counts as not done) lets
/// the display close its line.
#[must_use = "a task is shown until it is done"]
pub struct Task {
    finish: Option<Box<dyn FnOnce(bool) + Send>>,
    /// The last line of output the work printed, for the display to show.
    last_line: Option<Arc<Mutex<String>>>,
}

impl Task {
    /// A task whose display `finish(ok)` closes and shows `last_line` meanwhile.
    pub fn new(finish: impl FnOnce(bool) + Send + 'static, last_line: Arc<Mutex<String>>) -> Self {
        Task {
            finish: Some(Box::new(finish)),
            last_line: Some(last_line),
        }
    }

    /// A task with nothing to close.
    pub fn silent() -> Self {
        Task {
            finish: None,
            last_line: None,
        }
    }

    /// What to hand a remote command so each line it prints becomes the task's last line.
    pub fn watcher(&self) -> impl Fn(&str) + Send + Sync + 'static {
        let last = self.last_line.clone();
        move |line: &str| {
            let line = line.trim();
            if let (Some(last), false) = (&last, line.is_empty())
                && let Ok(mut l) = last.lock()
            {
                line.clone_into(&mut l);
            }
        }
    }

    pub fn done(mut self, ok: bool) {
        if let Some(f) = self.finish.take() {
            f(ok);
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(f) = self.finish.take() {
            f(false);
        }
    }
}

/// Step `index` of `total` of a plan on `target` (`osm45 [3/6]: run ...`): a task until it
/// ends, except a reboot, which only says its line because the reboot wait shows itself.
pub fn begin_step<P: Progress + ?Sized>(
    progress: &P,
    target: &str,
    index: usize,
    total: usize,
    change: &Change,
) -> Task {
    let line = format!(
        "{target} [{}/{total}]: {}",
        index + 1,
        change.action.describe()
    );
    match change.action {
        Action::Reboot => {
            progress.say(&line);
            Task::silent()
        }
        _ => progress.begin(&line),
    }
}
