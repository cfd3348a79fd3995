//! The Proxmox VE API as the VM phase uses it: one request method, plus what is built on it
//! (GET, task waiting). [`super::PveClient`] implements it over HTTPS; a test implements
//! [`Api::call`] over an in-memory cluster and gets the rest, as pve-api-types' fakes do.

use super::auth::Credentials;
use super::client::WaitOptions;
use super::error::PveError;
use super::request::{ApiRequest, Params};
use super::task::{LogLine, TaskState, TaskStatus, newest, tail_lines, task_state};
use super::upid::Upid;
use serde::de::DeserializeOwned;
use std::future::Future;

pub trait Api: Sync {
    /// Sends `req` and returns `data`, or the error the reply describes.
    fn call<T: DeserializeOwned>(
        &self,
        req: &ApiRequest,
    ) -> impl Future<Output = Result<T, PveError>> + Send;

    /// Who the requests run as; `None` when unknown (a fake), which counts as not root@pam.
    fn credentials(&self) -> Option<&Credentials> {
        None
    }

    fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &Params,
    ) -> impl Future<Output = Result<T, PveError>> + Send {
        let req = ApiRequest::get(path, params);
        async move { self.call(&req).await }
    }

    fn task_status(
        &self,
        upid: &Upid,
    ) -> impl Future<Output = Result<TaskStatus, PveError>> + Send {
        let req = ApiRequest::get(upid.status_path(), &Params::new());
        async move { self.call(&req).await }
    }

    /// Up to `limit` lines from line `start` (0-based).
    fn task_log(
        &self,
        upid: &Upid,
        start: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<LogLine>, PveError>> + Send {
        let params = Params::new().int("start", start).int("limit", limit);
        let req = ApiRequest::get(upid.log_path(), &params);
        async move { self.call(&req).await }
    }

    /// Polls the task until it stops or the deadline passes. `Ok` for `OK` and `WARNINGS: n`;
    /// [`PveError::TaskFailed`] with the log's last lines otherwise. While it runs, `watch`
    /// is told each new last line of its log (a disk import's progress, a start's messages).
    fn wait_task(
        &self,
        upid: &Upid,
        opts: &WaitOptions,
        watch: &(dyn Fn(&str) + Send + Sync),
    ) -> impl Future<Output = Result<TaskState, PveError>> + Send {
        async move {
            let start = tokio::time::Instant::now();
            let deadline = start + opts.timeout;
            let mut poll = opts.first_poll;
            // Lines already seen: the next read starts there (`start` is 0-based, `n` 1-based).
            let mut seen = 0;
            loop {
                let status = self.task_status(upid).await?;
                match task_state(&status) {
                    TaskState::Running => {
                        // Progress only: a log that cannot be read now is read at the end.
                        if let Ok(lines) = self.task_log(upid, seen, 500).await
                            && let Some(last) = newest(&lines)
                        {
                            seen = last.n;
                            watch(&last.t);
                        }
                    }
                    TaskState::Failed(exitstatus) => {
                        let log = match self.task_log(upid, 0, 50_000).await {
                            Ok(lines) => tail_lines(&lines, opts.log_lines),
                            Err(e) => vec![format!("(the task log could not be read: {e})")],
                        };
                        return Err(PveError::TaskFailed {
                            upid: upid.to_string(),
                            exitstatus,
                            log,
                        });
                    }
                    done => return Ok(done),
                }
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Err(PveError::TaskTimeout {
                        upid: upid.to_string(),
                        waited: now - start,
                    });
                }
                tokio::time::sleep(poll.min(deadline - now)).await;
                poll = (poll * 2).min(opts.max_poll);
            }
        }
    }
}
