//! Progress on stderr. On a terminal a task is one line redrawn with a spinner and its elapsed
//! time, closed with ✓ or ✗ and how long it took; elsewhere (CI logs, a pipe) it is plain
//! lines: the task, `still running after N s` every 30 s, and how it ended. `-q` shows nothing.

use crate::core::progress::{Progress, Task};
use crate::core::visible::visible;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a plain (not a terminal) display says a task still runs.
const PLAIN_EVERY: Duration = Duration::from_secs(30);
const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

pub struct Stderr {
    quiet: bool,
    terminal: bool,
}

impl Stderr {
    pub fn new(quiet: bool) -> Self {
        Stderr {
            quiet,
            terminal: std::io::stderr().is_terminal(),
        }
    }
}

impl Progress for Stderr {
    fn say(&self, line: &str) {
        let line = visible(line);
        match (self.quiet, self.terminal) {
            (true, _) => {}
            // over a task's spinner line, which then redraws below
            (false, true) => eprintln!("\r\x1b[2K{line}"),
            (false, false) => eprintln!("{line}"),
        }
    }

    fn begin(&self, what: &str) -> Task {
        if self.quiet {
            return Task::silent();
        }
        let terminal = self.terminal;
        let what = &*visible(what);
        if !terminal {
            eprintln!("{what}");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let last = Arc::new(Mutex::new(String::new()));
        let started = Instant::now();
        let ticker = {
            let (stop, last, what) = (stop.clone(), last.clone(), what.to_string());
            std::thread::spawn(move || tick(&what, started, terminal, &stop, &last))
        };
        let what = what.to_string();
        let finish = move |ok| {
            stop.store(true, Ordering::Relaxed);
            let _ = ticker.join();
            let secs = started.elapsed().as_secs_f64();
            let mark = if ok { "✓" } else { "✗" };
            if terminal {
                eprintln!("\r\x1b[2K{mark} {what} ({secs:.0} s)");
            } else {
                let how = if ok { "done" } else { "failed" };
                eprintln!("  {how} after {secs:.0} s");
            }
        };
        Task::new(finish, last)
    }
}

/// Until `stop`: a spinner with the elapsed time and the work's last output line (terminal),
/// or a line every 30 s.
fn tick(what: &str, started: Instant, terminal: bool, stop: &AtomicBool, last: &Mutex<String>) {
    let mut frame = 0;
    let mut said = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let secs = started.elapsed().as_secs();
        // the work's own output, a node's or a guest's
        let line = last
            .lock()
            .map(|l| visible(&l).into_owned())
            .unwrap_or_default();
        let line = match line.char_indices().nth(LAST_LINE_CHARS) {
            Some((end, _)) => format!(" · {}…", &line[..end]),
            None if line.is_empty() => String::new(),
            None => format!(" · {line}"),
        };
        if terminal {
            frame = (frame + 1) % FRAMES.len();
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{} {what} · {secs} s{line}", FRAMES[frame]);
            let _ = err.flush();
        } else if said.elapsed() >= PLAIN_EVERY {
            eprintln!("  still running after {secs} s{line}");
            said = Instant::now();
        }
    }
}

/// How much of the last output line a task's display shows.
const LAST_LINE_CHARS: usize = 60;
