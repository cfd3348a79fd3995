//! Authentication, sans-IO: the API token header, the ticket login request and reply, the
//! ticket cookie and CSRF header, and ticket expiry. Secrets stay in [`SecretString`] and are
//! exposed only to build a header value marked sensitive.

use super::envelope::{RawReply, parse_reply};
use super::error::{AuthKind, PveError};
use super::request::{ApiRequest, Method, Params};
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A ticket lives 2 hours.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(2 * 3600);
/// Renew (or log in again) this long before the ticket expires.
pub const TICKET_RENEW_MARGIN: Duration = Duration::from_secs(15 * 60);
pub const CSRF_HEADER: &str = "CSRFPreventionToken";

/// `USER@REALM!TOKENNAME` plus the secret (a UUID).
#[derive(Debug, Clone)]
pub struct ApiToken {
    user: String,
    name: String,
    secret: SecretString,
}

fn valid_token_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic())
        && n.len() >= 2
        && c.all(|x| x.is_ascii_alphanumeric() || matches!(x, '.' | '-' | '_'))
}

impl ApiToken {
    /// From the token id `USER@REALM!TOKENNAME` (as the GUI shows it) and the secret.
    pub fn new(token_id: &str, secret: SecretString) -> Result<Self, PveError> {
        let bad = |why: &str| {
            PveError::Config(format!(
                "API token id {token_id:?} {why}; expected USER@REALM!TOKENNAME, e.g. root@pam!pvegpu"
            ))
        };
        let (user, name) = token_id.split_once('!').ok_or_else(|| bad("has no '!'"))?;
        let (uname, realm) = user.split_once('@').ok_or_else(|| bad("has no '@REALM'"))?;
        if uname.is_empty() || realm.is_empty() {
            return Err(bad("has an empty user or realm"));
        }
        if !valid_token_name(name) {
            return Err(bad("has an invalid token name"));
        }
        if secret.expose_secret().trim().is_empty() {
            return Err(PveError::Config(format!(
                "the secret of API token {token_id} is empty"
            )));
        }
        Ok(Self {
            user: user.into(),
            name: name.into(),
            secret,
        })
    }

    /// `root@pam!pvegpu`.
    pub fn token_id(&self) -> String {
        format!("{}!{}", self.user, self.name)
    }

    /// `Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET`, marked sensitive.
    pub fn header_value(&self) -> Result<HeaderValue, PveError> {
        sensitive(&format!(
            "PVEAPIToken={}={}",
            self.token_id(),
            self.secret.expose_secret()
        ))
    }
}

fn sensitive(s: &str) -> Result<HeaderValue, PveError> {
    let mut v = HeaderValue::from_str(s).map_err(|_| {
        PveError::Config("a credential contains characters not allowed in a header".into())
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// A ticket from `POST /access/ticket`, with its CSRF token.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub username: String,
    ticket: SecretString,
    csrf: SecretString,
    /// Unix time the ticket was issued (from the ticket itself).
    pub issued: u64,
}

impl Ticket {
    /// From the ticket string and CSRF token as the server sent them.
    pub fn new(username: &str, ticket: SecretString, csrf: SecretString) -> Result<Self, PveError> {
        let issued = ticket_time(ticket.expose_secret()).ok_or_else(|| PveError::Decode {
            method: "POST".into(),
            path: "/access/ticket".into(),
            detail: "the ticket is not PVE:<user>:<hex time>::<signature>".into(),
        })?;
        Ok(Self {
            username: username.into(),
            ticket,
            csrf,
            issued,
        })
    }

    pub fn expires_at(&self) -> u64 {
        self.issued + TICKET_LIFETIME.as_secs()
    }

    pub fn is_expired(&self, now: SystemTime) -> bool {
        unix(now) >= self.expires_at()
    }

    /// Past the renewal point: log in again (or renew with the ticket as password).
    pub fn needs_renewal(&self, now: SystemTime) -> bool {
        unix(now) + TICKET_RENEW_MARGIN.as_secs() >= self.expires_at()
    }

    /// `Cookie: PVEAuthCookie=<ticket>` and, for anything but GET, the CSRF header; both
    /// marked sensitive.
    pub fn headers(&self, method: Method) -> Result<Vec<(&'static str, HeaderValue)>, PveError> {
        let cookie = percent_encoding::utf8_percent_encode(
            self.ticket.expose_secret(),
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        let mut h = vec![("cookie", sensitive(&format!("PVEAuthCookie={cookie}"))?)];
        if method != Method::Get {
            h.push((CSRF_HEADER, sensitive(self.csrf.expose_secret())?));
        }
        Ok(h)
    }

    /// `POST /access/ticket` with the old ticket as password renews it.
    pub fn renew_request(&self) -> ApiRequest {
        login_request(&self.username, &self.ticket)
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The issue time in `PVE:<userid>:<8 hex>::<signature>`.
pub fn ticket_time(ticket: &str) -> Option<u64> {
    let mut parts = ticket.split(':');
    (parts.next()? == "PVE").then_some(())?;
    let user = parts.next()?;
    if user.is_empty() || user.starts_with('!') {
        return None;
    }
    let hex = parts.next()?;
    if hex.len() != 8 || !parts.next()?.is_empty() {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The login request: form `username`, `password`; the body is marked sensitive.
pub fn login_request(username: &str, password: &SecretString) -> ApiRequest {
    let mut r = ApiRequest::post(
        "/access/ticket",
        &Params::new()
            .str("username", username)
            .str("password", password.expose_secret()),
    );
    r.sensitive = true;
    r
}

#[derive(Deserialize)]
struct LoginData {
    username: String,
    ticket: String,
    #[serde(rename = "CSRFPreventionToken", default)]
    csrf: Option<String>,
    #[serde(
        rename = "NeedTFA",
        default,
        deserialize_with = "super::envelope::de::flag"
    )]
    need_tfa: bool,
}

/// The login reply: a ticket, or the error (401 `authentication failure`, TFA required).
pub fn parse_login_reply(reply: RawReply<'_>) -> Result<Ticket, PveError> {
    let d: LoginData = parse_reply(Method::Post, "/access/ticket", reply, AuthKind::None)?;
    if d.need_tfa || d.ticket.starts_with("PVE:!tfa!") {
        return Err(PveError::Auth {
            method: "POST".into(),
            path: "/access/ticket".into(),
            message: format!(
                "{} has two-factor authentication, which pvegpu does not answer; use an API token",
                d.username
            ),
            kind: AuthKind::None,
        });
    }
    let csrf = d.csrf.ok_or_else(|| PveError::Decode {
        method: "POST".into(),
        path: "/access/ticket".into(),
        detail: "the login reply has no CSRFPreventionToken".into(),
    })?;
    Ticket::new(&d.username, d.ticket.into(), csrf.into())
}

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub enum Credentials {
    Token(ApiToken),
    Ticket(Ticket),
}

impl Credentials {
    pub fn kind(&self) -> AuthKind {
        match self {
            Credentials::Token(_) => AuthKind::Token,
            Credentials::Ticket(_) => AuthKind::Ticket,
        }
    }

    /// The headers for one request; refuses an expired ticket without sending anything.
    pub fn headers(
        &self,
        method: Method,
        now: SystemTime,
    ) -> Result<Vec<(&'static str, HeaderValue)>, PveError> {
        match self {
            Credentials::Token(t) => Ok(vec![("authorization", t.header_value()?)]),
            Credentials::Ticket(t) if t.is_expired(now) => Err(PveError::TicketExpired {
                user: t.username.clone(),
                expired_at: t.expires_at(),
            }),
            Credentials::Ticket(t) => t.headers(method),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::Hint;

    const SECRET: &str = "8a3c1f4e-0b1d-4c2e-9f3a-5d6e7f8a9b0c";
    // NOTES.md section 2: a ticket issued at 0x66F1E2D3.
    const TICKET: &str = "PVE:root@pam:66F1E2D3::c2lnbmF0dXJl/+=";
    const CSRF: &str = "66F1E2D3:aG1hYw";

    #[test]
    fn token_header_is_exact_and_sensitive() {
        let t = ApiToken::new("root@pam!pvegpu", SECRET.to_string().into()).unwrap();
        assert_eq!(t.token_id(), "root@pam!pvegpu");
        let h = t.header_value().unwrap();
        assert!(h.is_sensitive());
        assert_eq!(
            h.to_str().unwrap(),
            format!("PVEAPIToken=root@pam!pvegpu={SECRET}")
        );
        let debug = format!("{t:?} {:?}", Credentials::Token(t.clone()));
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(!format!("{h:?}").contains(SECRET));
    }

    #[test]
    fn token_id_validation() {
        for bad in [
            "root@pam",
            "root!pvegpu",
            "@pam!x1",
            "root@pam!1abc",
            "root@pam!a b",
            "root@pam!",
        ] {
            let e = ApiToken::new(bad, SECRET.to_string().into()).unwrap_err();
            assert!(matches!(e, PveError::Config(_)), "{bad}");
            assert!(!e.to_string().contains(SECRET));
        }
        assert!(ApiToken::new("root@pam!x", String::new().into()).is_err());
        assert!(ApiToken::new("svc@pve!pvegpu-2.a_b", SECRET.to_string().into()).is_ok());
    }

    #[test]
    fn login_request_and_reply() {
        let r = login_request("root@pam", &"hunter2&x".to_string().into());
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.path, "/access/ticket");
        assert_eq!(
            r.body.as_deref(),
            Some("username=root%40pam&password=hunter2%26x")
        );
        assert!(!format!("{r:?}").contains("hunter2"));

        let body = format!(
            r#"{{"data":{{"username":"root@pam","ticket":"{TICKET}","CSRFPreventionToken":"{CSRF}","cap":{{"vms":{{}}}},"clustername":"lab"}}}}"#
        );
        let t = parse_login_reply(RawReply {
            status: 200,
            reason: None,
            body: body.as_bytes(),
        })
        .unwrap();
        assert_eq!(t.username, "root@pam");
        assert_eq!(t.issued, 0x66F1E2D3);
        assert_eq!(t.expires_at(), 0x66F1E2D3 + 7200);
        assert!(!format!("{t:?}").contains("c2lnbmF0dXJl"));
        assert!(!format!("{t:?}").contains("aG1hYw"));
    }

    #[test]
    fn login_failure_and_tfa() {
        let e = parse_login_reply(RawReply {
            status: 401,
            reason: None,
            body: br#"{"data":null,"message":"authentication failure\n"}"#,
        })
        .unwrap_err();
        assert!(matches!(
            e,
            PveError::Auth {
                kind: AuthKind::None,
                ..
            }
        ));
        assert!(e.hint().unwrap().contains("password"));
        let e = parse_login_reply(RawReply {
            status: 200,
            reason: None,
            body: br#"{"data":{"username":"root@pam","ticket":"PVE:!tfa!abc","NeedTFA":1}}"#,
        })
        .unwrap_err();
        assert!(e.to_string().contains("two-factor"));
    }

    #[test]
    fn ticket_headers_csrf_only_for_writes_and_expiry() {
        let t = Ticket::new(
            "root@pam",
            TICKET.to_string().into(),
            CSRF.to_string().into(),
        )
        .unwrap();
        let g = t.headers(Method::Get).unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].0, "cookie");
        assert_eq!(
            g[0].1.to_str().unwrap(),
            "PVEAuthCookie=PVE%3Aroot%40pam%3A66F1E2D3%3A%3Ac2lnbmF0dXJl%2F%2B%3D"
        );
        assert!(g[0].1.is_sensitive());
        let p = t.headers(Method::Post).unwrap();
        assert_eq!(p[1].0, CSRF_HEADER);
        assert_eq!(p[1].1.to_str().unwrap(), CSRF);
        assert!(p[1].1.is_sensitive());
        assert_eq!(t.headers(Method::Delete).unwrap().len(), 2);

        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let issued = 0x66F1E2D3;
        assert!(!t.is_expired(at(issued + 3600)));
        assert!(!t.needs_renewal(at(issued + 3600)));
        assert!(t.needs_renewal(at(issued + 7200 - 60)));
        assert!(t.is_expired(at(issued + 7200)));
        let c = Credentials::Ticket(t);
        let e = c.headers(Method::Get, at(issued + 7300)).unwrap_err();
        assert!(matches!(e, PveError::TicketExpired { .. }));
        assert!(e.hint().unwrap().contains("log in again"));
        assert!(c.headers(Method::Get, at(issued + 10)).is_ok());
    }

    #[test]
    fn ticket_time_parsing() {
        assert_eq!(ticket_time(TICKET), Some(0x66F1E2D3));
        assert_eq!(ticket_time("PVE:root%3Ax@pam:00000010::sig"), Some(16));
        assert_eq!(ticket_time("PVE:!tfa!x:00000010::sig"), None);
        assert_eq!(ticket_time("PMG:root@pam:66F1E2D3::sig"), None);
        assert_eq!(ticket_time("PVE:root@pam:66F1E2D::sig"), None);
    }
}
