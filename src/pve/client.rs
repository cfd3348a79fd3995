//! The HTTP side: reqwest over rustls with the trust mode of [`super::tls`]. Connect errors
//! are retried with backoff; a request that may have reached the server is retried only
//! when it is a GET. Everything else (building, parsing) is in the pure modules.

use super::api::Api;
use super::auth::{Credentials, login_request, parse_login_reply};
use super::envelope::{RawReply, parse_reply};
use super::error::{AuthKind, PveError};
use super::request::{ApiRequest, Method};
use super::tls::{TlsObserver, TlsRefusal, TlsTrust, client_config};
use crate::core::redact::for_log;
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use std::time::{Duration, SystemTime};

/// How to reach and trust one node's API.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `https://host:8006`.
    pub base_url: String,
    pub trust: TlsTrust,
    pub credentials: Option<Credentials>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Extra attempts after a retryable failure.
    pub retries: u32,
    /// First backoff; doubles per attempt.
    pub backoff: Duration,
}

impl ClientOptions {
    pub fn new(base_url: impl Into<String>, trust: TlsTrust) -> Self {
        Self {
            base_url: base_url.into(),
            trust,
            credentials: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            retries: 3,
            backoff: Duration::from_millis(500),
        }
    }
    pub fn credentials(mut self, c: Credentials) -> Self {
        self.credentials = Some(c);
        self
    }
}

/// Polling a task to its end.
#[derive(Debug, Clone, Copy)]
pub struct WaitOptions {
    pub timeout: Duration,
    pub first_poll: Duration,
    pub max_poll: Duration,
    /// Log lines kept for a failed task.
    pub log_lines: usize,
}

impl Default for WaitOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(600),
            first_poll: Duration::from_millis(250),
            max_poll: Duration::from_secs(2),
            log_lines: 20,
        }
    }
}

#[derive(Debug)]
pub struct PveClient {
    http: reqwest::Client,
    base: String,
    host: String,
    trust: TlsTrust,
    observer: TlsObserver,
    credentials: Option<Credentials>,
    retries: u32,
    backoff: Duration,
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

impl PveClient {
    pub fn new(opts: ClientOptions) -> Result<Self, PveError> {
        let observer = TlsObserver::default();
        let tls = client_config(&opts.trust, &observer)?;
        let base = opts.base_url.trim_end_matches('/').to_string();
        let host = base
            .strip_prefix("https://")
            .ok_or_else(|| {
                PveError::Config(format!(
                    "API address {base:?} must start with https:// (e.g. https://10.0.0.45:8006)"
                ))
            })?
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.request_timeout)
            .build()
            .map_err(|e| PveError::Config(format!("HTTP client: {}", chain(&e))))?;
        Ok(Self {
            http,
            base,
            host,
            trust: opts.trust,
            observer,
            credentials: opts.credentials,
            retries: opts.retries,
            backoff: opts.backoff,
        })
    }

    fn auth_kind(&self) -> AuthKind {
        self.credentials
            .as_ref()
            .map_or(AuthKind::None, Credentials::kind)
    }

    /// `POST /access/ticket`; on success later requests use the ticket and CSRF token.
    pub async fn login(&mut self, username: &str, password: &SecretString) -> Result<(), PveError> {
        let req = login_request(username, password);
        let (status, reason, body) = self.send_with(&req, None).await?;
        let ticket = parse_login_reply(RawReply {
            status,
            reason: reason.as_deref(),
            body: &body,
        })?;
        self.credentials = Some(Credentials::Ticket(ticket));
        Ok(())
    }

    async fn send_with(
        &self,
        req: &ApiRequest,
        creds: Option<&Credentials>,
    ) -> Result<(u16, Option<String>, Vec<u8>), PveError> {
        if let Some(segment) = super::request::collapsing_segment(&req.path) {
            return Err(PveError::DotSegment {
                method: req.method.to_string(),
                path: req.path.clone(),
                segment: segment.to_string(),
            });
        }
        let mut attempt = 0;
        loop {
            match self.send_once(req, creds).await {
                Err(e) if attempt < self.retries && e.may_retry(req.method.retry_after_send()) => {
                    let wait = self.backoff * 2u32.saturating_pow(attempt);
                    tracing::warn!(
                        "{} {}: {e}; retrying in {} ms",
                        req.method,
                        req.path,
                        wait.as_millis()
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn send_once(
        &self,
        req: &ApiRequest,
        creds: Option<&Credentials>,
    ) -> Result<(u16, Option<String>, Vec<u8>), PveError> {
        let method = match req.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut b = self.http.request(method, req.url(&self.base));
        if let Some(c) = creds {
            for (name, value) in c.headers(req.method, SystemTime::now())? {
                b = b.header(name, value);
            }
        }
        if let (Some(body), Some(ct)) = (&req.body, req.content_type()) {
            tracing::debug!("api {} {} body: {}", req.method, req.path, for_log(body));
            b = b.header("content-type", ct).body(body.clone());
        }
        let started = std::time::Instant::now();
        let resp = b.send().await.map_err(|e| {
            let e = self.send_error(req, &e);
            tracing::info!("api {} {}: {e}", req.method, req.path);
            e
        })?;
        let status = resp.status().as_u16();
        tracing::info!(
            "api {} {} -> {status} in {} ms",
            req.method,
            req.path,
            started.elapsed().as_millis()
        );
        let reason = resp
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned());
        let body = resp.bytes().await.map_err(|e| PveError::Transport {
            method: req.method.to_string(),
            path: req.path.clone(),
            detail: format!("reading the reply: {}", chain(&e)),
        })?;
        tracing::debug!(
            "api {} {} reply: {}",
            req.method,
            req.path,
            for_log(&String::from_utf8_lossy(&body))
        );
        Ok((status, reason, body.to_vec()))
    }

    fn send_error(&self, req: &ApiRequest, e: &reqwest::Error) -> PveError {
        match self.observer.take() {
            Some(TlsRefusal::Mismatch { expected, actual }) => {
                return PveError::FingerprintMismatch {
                    host: self.host.clone(),
                    expected: expected.to_string(),
                    actual: actual.to_string(),
                };
            }
            Some(TlsRefusal::Untrusted { actual, detail }) => {
                return PveError::UntrustedCertificate {
                    host: self.host.clone(),
                    trust: self.trust.to_string(),
                    detail,
                    fingerprint: Some(actual.to_string()),
                };
            }
            None => {}
        }
        let detail = chain(e);
        if e.is_connect() {
            PveError::Connect {
                url: self.base.clone(),
                detail,
            }
        } else {
            PveError::Transport {
                method: req.method.to_string(),
                path: req.path.clone(),
                detail,
            }
        }
    }
}

impl Api for PveClient {
    /// Sends with retries.
    async fn call<T: DeserializeOwned>(&self, req: &ApiRequest) -> Result<T, PveError> {
        let (status, reason, body) = self.send_with(req, self.credentials.as_ref()).await?;
        parse_reply(
            req.method,
            &req.path,
            RawReply {
                status,
                reason: reason.as_deref(),
                body: &body,
            },
            self.auth_kind(),
        )
    }

    fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }
}
