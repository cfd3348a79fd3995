//! The response envelope: `{"data": ...}` on success; on error the status code, the reason
//! phrase (the first line of the message), `message` (pve-http-server 5.2.0 and later) and
//! `errors` (per parameter). Also tolerant deserializers for numbers that arrive as strings.

use super::error::{AuthKind, PveError};
use super::request::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// A reply as received: what the pure parsers need, nothing else.
#[derive(Debug, Clone, Copy)]
pub struct RawReply<'a> {
    pub status: u16,
    /// The status line's reason phrase when the server sent a non-standard one.
    pub reason: Option<&'a str>,
    pub body: &'a [u8],
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize, Default)]
struct ErrorEnvelope {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: Option<BTreeMap<String, serde_json::Value>>,
}

/// `data` of a 2xx reply, or the error the reply describes.
pub fn parse_reply<T: DeserializeOwned>(
    method: Method,
    path: &str,
    reply: RawReply<'_>,
    auth: AuthKind,
) -> Result<T, PveError> {
    if !(200..300).contains(&reply.status) {
        return Err(parse_error(method, path, reply, auth));
    }
    serde_json::from_slice::<Envelope<T>>(reply.body)
        .map(|e| e.data)
        .map_err(|e| PveError::Decode {
            method: method.to_string(),
            path: path.to_string(),
            detail: format!("{e} in {}", preview(reply.body)),
        })
}

fn preview(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let mut p: String = s.chars().take(200).collect();
    if s.chars().count() > 200 {
        p.push_str("...");
    }
    format!("{p:?}")
}

/// The error a non-2xx reply describes. Never fails: an unreadable body falls back to the
/// reason phrase.
pub fn parse_error(method: Method, path: &str, reply: RawReply<'_>, auth: AuthKind) -> PveError {
    let env: ErrorEnvelope = serde_json::from_slice(reply.body).unwrap_or_default();
    let errors: BTreeMap<String, String> = env
        .errors
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, text.trim_end().to_string())
        })
        .collect();
    let body_text = String::from_utf8_lossy(reply.body);
    // Before pve-http-server 5.2.0 the message lived only in the status line; a proxied
    // error (596) may come with a plain-text body.
    let message = env
        .message
        .map(|m| m.trim_end().to_string())
        .filter(|m| !m.is_empty())
        .or_else(|| {
            reply
                .reason
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty())
        })
        .or_else(|| {
            let t = body_text.trim();
            (!t.is_empty() && !t.starts_with('{')).then(|| t.lines().next().unwrap_or(t).into())
        })
        .unwrap_or_else(|| canonical_reason(reply.status).to_string());
    let method_s = method.to_string();
    let path_s = path.to_string();
    let unknown = unknown_node(&message).or_else(|| unknown_node(&body_text));
    match reply.status {
        401 => PveError::Auth {
            method: method_s,
            path: path_s,
            message,
            kind: auth,
        },
        403 => PveError::Permission {
            method: method_s,
            path: path_s,
            message,
        },
        s if unknown.is_some() => PveError::UnknownNode {
            method: method_s,
            path: path_s,
            node: unknown.unwrap_or_default(),
            status: s,
            message,
        },
        595 | 596 => match node_in_path(path).filter(|_| looks_like_unknown_node(&message)) {
            Some(node) => PveError::UnknownNode {
                method: method_s,
                path: path_s,
                node,
                status: reply.status,
                message,
            },
            None => PveError::NodeUnreachable {
                method: method_s,
                path: path_s,
                status: reply.status,
                message,
            },
        },
        status => PveError::Api {
            method: method_s,
            path: path_s,
            status,
            message,
            errors,
        },
    }
}

/// `no such cluster node 'X'` → `X`.
fn unknown_node(text: &str) -> Option<String> {
    let rest = &text[text.find("no such cluster node '")? + "no such cluster node '".len()..];
    Some(rest[..rest.find('\'')?].to_string())
}

/// A 596 for a name that does not resolve: the node is not in the cluster.
fn looks_like_unknown_node(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("hostname lookup") || m.contains("name or service not known")
}

/// `/nodes/{node}/...` → `node`.
pub fn node_in_path(path: &str) -> Option<String> {
    let mut it = path.trim_start_matches('/').split('/');
    (it.next()? == "nodes").then_some(())?;
    let n = it.next()?;
    let decoded = percent_encoding::percent_decode_str(n).decode_utf8().ok()?;
    (!decoded.is_empty()).then(|| decoded.into_owned())
}

fn canonical_reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        595 => "Connection error",
        596 => "Proxy error",
        _ => "error",
    }
}

/// Deserializers for values JSON::XS may send as numbers or as strings.
pub mod de {
    use serde::{Deserialize, Deserializer, de::Error};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        Int(i64),
        Float(f64),
        Str(String),
        Bool(bool),
    }

    fn to_i64<E: Error>(v: NumOrStr) -> Result<i64, E> {
        match v {
            NumOrStr::Int(i) => Ok(i),
            NumOrStr::Float(f) if f.fract() == 0.0 => Ok(f as i64),
            NumOrStr::Float(f) => Err(E::custom(format!("expected an integer, got {f}"))),
            NumOrStr::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| E::custom(format!("expected an integer, got {s:?}"))),
            NumOrStr::Bool(b) => Ok(b as i64),
        }
    }

    /// `100` or `"100"`.
    pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        to_i64(NumOrStr::deserialize(d)?)
    }

    /// `100`, `"100"`, `null` or absent (use with `#[serde(default)]`).
    pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Option::<NumOrStr>::deserialize(d)?.map(to_i64).transpose()
    }

    /// `0.5`, `"0.5"` or `1`.
    pub fn float<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match NumOrStr::deserialize(d)? {
            NumOrStr::Int(i) => Ok(i as f64),
            NumOrStr::Float(f) => Ok(f),
            NumOrStr::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| D::Error::custom(format!("expected a number, got {s:?}"))),
            NumOrStr::Bool(b) => Ok(if b { 1.0 } else { 0.0 }),
        }
    }

    /// `1`/`0`, `"1"`/`"0"`, `true`/`false`; absent is false with `#[serde(default)]`.
    pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        match Option::<NumOrStr>::deserialize(d)? {
            None => Ok(false),
            Some(NumOrStr::Bool(b)) => Ok(b),
            Some(NumOrStr::Str(s)) if matches!(s.as_str(), "true" | "on" | "yes") => Ok(true),
            Some(NumOrStr::Str(s)) if matches!(s.as_str(), "false" | "off" | "no") => Ok(false),
            Some(v) => Ok(to_i64::<D::Error>(v)? != 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::Hint;

    fn reply(status: u16, reason: Option<&'static str>, body: &'static str) -> RawReply<'static> {
        RawReply {
            status,
            reason,
            body: body.as_bytes(),
        }
    }

    #[test]
    fn success_data_and_numbers_as_strings() {
        // GET /cluster/nextid answers a string although the schema says integer.
        #[derive(Deserialize)]
        struct Id(#[serde(deserialize_with = "de::int")] i64);
        let Id(id) = parse_reply(
            Method::Get,
            "/cluster/nextid",
            reply(200, None, r#"{"data":"100"}"#),
            AuthKind::Token,
        )
        .unwrap();
        assert_eq!(id, 100);
        let Id(id) = parse_reply(
            Method::Get,
            "/cluster/nextid",
            reply(200, None, r#"{"data":101}"#),
            AuthKind::Token,
        )
        .unwrap();
        assert_eq!(id, 101);
    }

    #[test]
    fn tolerant_fields_and_unknown_fields_ignored() {
        #[derive(Deserialize)]
        struct Cfg {
            #[serde(deserialize_with = "de::int")]
            cores: i64,
            #[serde(default, deserialize_with = "de::flag")]
            onboot: bool,
            #[serde(default, deserialize_with = "de::flag")]
            agent: bool,
            #[serde(deserialize_with = "de::float")]
            cpulimit: f64,
            #[serde(default, deserialize_with = "de::opt_int")]
            balloon: Option<i64>,
            #[serde(default, deserialize_with = "de::opt_int")]
            shares: Option<i64>,
        }
        let c: Cfg = parse_reply(
            Method::Get,
            "/nodes/pve/qemu/201/config",
            reply(
                200,
                None,
                r#"{"data":{"cores":"10","onboot":1,"cpulimit":"1.5","balloon":0,"digest":"ab","extra":[1]}}"#,
            ),
            AuthKind::Token,
        )
        .unwrap();
        assert_eq!(c.cores, 10);
        assert!(c.onboot);
        assert!(!c.agent);
        assert_eq!(c.cpulimit, 1.5);
        assert_eq!(c.balloon, Some(0));
        assert_eq!(c.shares, None);
    }

    #[test]
    fn null_data() {
        let v: Option<String> = parse_reply(
            Method::Put,
            "/nodes/pve/qemu/201/config",
            reply(200, None, r#"{"data":null}"#),
            AuthKind::Token,
        )
        .unwrap();
        assert_eq!(v, None);
    }

    #[test]
    fn parameter_errors_are_kept() {
        let e = parse_error(
            Method::Post,
            "/nodes/pve/qemu",
            reply(
                400,
                Some("Parameter verification failed."),
                r#"{"data":null,"message":"Parameter verification failed.\n","errors":{"vmid":"invalid format - value does not look like a valid VM ID\n","memory":"type check ('integer') failed - got 'abc'"}}"#,
            ),
            AuthKind::Token,
        );
        let PveError::Api {
            status,
            message,
            errors,
            ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(*status, 400);
        assert_eq!(message, "Parameter verification failed.");
        assert_eq!(
            errors["vmid"],
            "invalid format - value does not look like a valid VM ID"
        );
        assert_eq!(
            errors["memory"],
            "type check ('integer') failed - got 'abc'"
        );
        assert_eq!(
            e.to_string(),
            "POST /nodes/pve/qemu: 400 Parameter verification failed. (memory: type check ('integer') failed - got 'abc'; vmid: invalid format - value does not look like a valid VM ID)"
        );
    }

    #[test]
    fn old_servers_message_only_in_reason_phrase() {
        let e = parse_error(
            Method::Post,
            "/nodes/pve/qemu/100/status/reboot",
            reply(500, Some("VM 100 not running"), r#"{"data":null}"#),
            AuthKind::Token,
        );
        let PveError::Api { message, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(message, "VM 100 not running");
    }

    #[test]
    fn empty_401_is_auth_error_with_reason() {
        for (reason, kind) in [
            ("Authentication failed!", AuthKind::Token),
            ("No ticket", AuthKind::Ticket),
        ] {
            let e = parse_error(Method::Get, "/version", reply(401, Some(reason), ""), kind);
            let PveError::Auth {
                message, kind: k, ..
            } = &e
            else {
                panic!("{e:?}")
            };
            assert_eq!(message, reason);
            assert_eq!(*k, kind);
            assert!(e.hint().is_some());
        }
        // No reason phrase at all.
        let e = parse_error(
            Method::Get,
            "/version",
            reply(401, None, ""),
            AuthKind::Token,
        );
        assert!(matches!(e, PveError::Auth { ref message, .. } if message == "Unauthorized"));
    }

    #[test]
    fn login_failure_body_message() {
        let e = parse_error(
            Method::Post,
            "/access/ticket",
            reply(
                401,
                None,
                r#"{"data":null,"message":"authentication failure\n"}"#,
            ),
            AuthKind::None,
        );
        assert!(
            matches!(e, PveError::Auth { ref message, .. } if message == "authentication failure")
        );
    }

    #[test]
    fn permission_and_hostpci_root_rule() {
        let e = parse_error(
            Method::Post,
            "/nodes/pve/qemu",
            reply(
                403,
                Some("Permission check failed (/vms/100, VM.PowerMgmt)"),
                r#"{"data":null,"message":"Permission check failed (/vms/100, VM.PowerMgmt)\n"}"#,
            ),
            AuthKind::Token,
        );
        assert!(matches!(e, PveError::Permission { .. }));
        let e = parse_error(
            Method::Put,
            "/nodes/pve/qemu/100/config",
            reply(
                500,
                Some("only root can set 'hostpci0' config for non-mapped devices"),
                r#"{"data":null,"message":"only root can set 'hostpci0' config for non-mapped devices\n"}"#,
            ),
            AuthKind::Token,
        );
        assert!(
            matches!(e, PveError::Api { status: 500, ref message, .. } if message == "only root can set 'hostpci0' config for non-mapped devices")
        );
    }

    #[test]
    fn unknown_node_596_and_proxy_errors() {
        let e = parse_error(
            Method::Get,
            "/nodes/Proxmox/qemu",
            reply(
                596,
                Some("no such cluster node 'Proxmox'"),
                "no such cluster node 'Proxmox'\n",
            ),
            AuthKind::Token,
        );
        let PveError::UnknownNode { node, status, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!((node.as_str(), *status), ("Proxmox", 596));
        assert!(e.hint().unwrap().contains("case-sensitive"));

        let e = parse_error(
            Method::Get,
            "/nodes/pve2/status",
            reply(595, Some("No route to host"), ""),
            AuthKind::Token,
        );
        assert!(matches!(e, PveError::NodeUnreachable { status: 595, .. }));
        assert!(e.may_retry(true) && !e.may_retry(false));

        let e = parse_error(
            Method::Get,
            "/nodes/nope/status",
            reply(
                500,
                Some(
                    "hostname lookup 'nope' failed - failed to get address info for: nope: Name or service not known",
                ),
                "",
            ),
            AuthKind::Token,
        );
        assert!(
            matches!(e, PveError::Api { status: 500, .. }),
            "500 stays an API error: {e:?}"
        );
        let e = parse_error(
            Method::Get,
            "/nodes/nope/status",
            reply(596, Some("hostname lookup 'nope' failed"), ""),
            AuthKind::Token,
        );
        assert!(matches!(e, PveError::UnknownNode { ref node, .. } if node == "nope"));
    }

    #[test]
    fn not_implemented_and_garbage() {
        let e = parse_error(
            Method::Get,
            "/foo",
            reply(
                501,
                Some("Method 'GET /foo' not implemented"),
                r#"{"data":null,"message":"Method 'GET /foo' not implemented\n"}"#,
            ),
            AuthKind::Token,
        );
        assert!(matches!(e, PveError::Api { status: 501, .. }));
        let r: Result<String, _> = parse_reply(
            Method::Get,
            "/version",
            reply(200, None, "<html>"),
            AuthKind::Token,
        );
        assert!(matches!(r, Err(PveError::Decode { .. })));
    }

    #[test]
    fn node_from_path() {
        assert_eq!(node_in_path("/nodes/osm45/qemu").as_deref(), Some("osm45"));
        assert_eq!(node_in_path("/nodes/a%2Db").as_deref(), Some("a-b"));
        assert_eq!(node_in_path("/cluster/nextid"), None);
    }
}
