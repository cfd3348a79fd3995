//! Task status and log: `running` until `stopped`; exit status `OK` or `WARNINGS: n` is
//! success, anything else is the error text (the log's last line `TASK ERROR: <text>`).

use super::envelope::de;
use serde::Deserialize;

/// `GET /nodes/{node}/tasks/{upid}/status`; unknown fields (`tokenid`, ...) are ignored.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TaskStatus {
    pub status: String,
    #[serde(default)]
    pub exitstatus: Option<String>,
    #[serde(default, rename = "type")]
    pub worker_type: Option<String>,
    #[serde(default, deserialize_with = "de::opt_int")]
    pub pid: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_int")]
    pub starttime: Option<i64>,
}

/// Where a task stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    Running,
    Ok,
    /// Success with `n` warnings.
    Warnings(u32),
    /// The exit status: the error text.
    Failed(String),
}

impl TaskState {
    pub fn is_finished(&self) -> bool {
        !matches!(self, TaskState::Running)
    }
}

/// The state a status reply describes.
pub fn task_state(s: &TaskStatus) -> TaskState {
    if s.status != "stopped" {
        return TaskState::Running;
    }
    match s.exitstatus.as_deref().map(str::trim) {
        Some("OK") => TaskState::Ok,
        Some(x) if x.starts_with("WARNINGS: ") => {
            TaskState::Warnings(x["WARNINGS: ".len()..].trim().parse().unwrap_or(0))
        }
        Some(x) => TaskState::Failed(x.to_string()),
        None => TaskState::Failed("stopped without an exit status".into()),
    }
}

/// One line of `GET .../log`: `{"n":1,"t":"text"}`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct LogLine {
    #[serde(deserialize_with = "de::int")]
    pub n: i64,
    pub t: String,
}

/// The newest line of a log read, unless the log is empty (its placeholder `no content`).
pub fn newest(log: &[LogLine]) -> Option<&LogLine> {
    log.iter()
        .max_by_key(|l| l.n)
        .filter(|l| !(log.len() == 1 && l.t == "no content"))
}

/// The last `keep` lines of a log, in order, without the placeholder of an empty log.
pub fn tail_lines(log: &[LogLine], keep: usize) -> Vec<String> {
    let mut lines: Vec<&LogLine> = log.iter().collect();
    lines.sort_by_key(|l| l.n);
    if lines.len() == 1 && lines[0].t == "no content" {
        return Vec::new();
    }
    let skip = lines.len().saturating_sub(keep);
    lines.into_iter().skip(skip).map(|l| l.t.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(json: &str) -> TaskStatus {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn running_ok_warnings_failed() {
        let r = status(
            r#"{"upid":"UPID:pve:0012ABCD:0A1B2C3D:66F1E2D3:qmstart:100:root@pam:","node":"pve","pid":1223629,"pstart":"169487421","starttime":1727127251,"type":"qmstart","id":"100","user":"root@pam","tokenid":"pvegpu","status":"running"}"#,
        );
        assert_eq!(task_state(&r), TaskState::Running);
        assert_eq!(r.pid, Some(1223629));
        assert_eq!(
            task_state(&status(r#"{"status":"stopped","exitstatus":"OK"}"#)),
            TaskState::Ok
        );
        assert_eq!(
            task_state(&status(
                r#"{"status":"stopped","exitstatus":"WARNINGS: 2"}"#
            )),
            TaskState::Warnings(2)
        );
        assert_eq!(
            task_state(&status(
                r#"{"status":"stopped","exitstatus":"no PCI device found for '0000:01:00.0'"}"#
            )),
            TaskState::Failed("no PCI device found for '0000:01:00.0'".into())
        );
        assert_eq!(
            task_state(&status(
                r#"{"status":"stopped","exitstatus":"unexpected status"}"#
            )),
            TaskState::Failed("unexpected status".into())
        );
        assert!(matches!(
            task_state(&status(r#"{"status":"stopped"}"#)),
            TaskState::Failed(_)
        ));
    }

    #[test]
    fn log_tail_and_empty_log() {
        let log: Vec<LogLine> = serde_json::from_str(
            r#"[{"n":1,"t":"start VM 100"},{"n":"2","t":"kvm: -device vfio-pci: no such device"},{"n":3,"t":"TASK ERROR: start failed: QEMU exited with code 1"}]"#,
        )
        .unwrap();
        assert_eq!(
            tail_lines(&log, 2),
            vec![
                "kvm: -device vfio-pci: no such device".to_string(),
                "TASK ERROR: start failed: QEMU exited with code 1".to_string()
            ]
        );
        assert_eq!(tail_lines(&log, 10).len(), 3);
        let empty: Vec<LogLine> = serde_json::from_str(r#"[{"n":1,"t":"no content"}]"#).unwrap();
        assert!(tail_lines(&empty, 10).is_empty());
        assert_eq!(newest(&empty), None);
        assert_eq!(newest(&log).map(|l| l.n), Some(3));
    }
}
