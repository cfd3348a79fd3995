//! Pure request builders: method, path under `/api2/json`, form body or query string.
//! Booleans go as `1`/`0` (the form encoding carries strings only), arrays as repeated keys.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::fmt;

/// The characters left as they are in a path segment: RFC 3986 unreserved.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The API's base path.
pub const API_BASE: &str = "/api2/json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }

    /// Whether a request that may have reached the server can be sent again. Only GET: a
    /// PUT with a digest, or a DELETE, would fail or act twice on a second try.
    pub fn retry_after_send(self) -> bool {
        matches!(self, Method::Get)
    }

    /// Whether parameters travel in the query string (GET, DELETE) rather than the body.
    pub fn params_in_query(self) -> bool {
        matches!(self, Method::Get | Method::Delete)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parameter value, as Proxmox's form parser reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    /// Repeated key: `map=a&map=b`.
    List(Vec<String>),
}

/// Ordered parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, Value)>);

impl Params {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn str(mut self, key: &str, value: impl Into<String>) -> Self {
        self.0.push((key.into(), Value::Str(value.into())));
        self
    }
    pub fn opt_str(self, key: &str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.str(key, v),
            None => self,
        }
    }
    pub fn int(mut self, key: &str, value: i64) -> Self {
        self.0.push((key.into(), Value::Int(value)));
        self
    }
    pub fn bool(mut self, key: &str, value: bool) -> Self {
        self.0.push((key.into(), Value::Bool(value)));
        self
    }
    pub fn list<S: Into<String>>(mut self, key: &str, values: impl IntoIterator<Item = S>) -> Self {
        let v = values.into_iter().map(Into::into).collect();
        self.0.push((key.into(), Value::List(v)));
        self
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &(String, Value)> {
        self.0.iter()
    }
}

/// `application/x-www-form-urlencoded` text of the parameters (also the query string).
pub fn encode_params(params: &Params) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params.iter() {
        match v {
            Value::Str(x) => {
                s.append_pair(k, x);
            }
            Value::Int(i) => {
                s.append_pair(k, &i.to_string());
            }
            Value::Bool(b) => {
                s.append_pair(k, if *b { "1" } else { "0" });
            }
            Value::List(items) => {
                for x in items {
                    s.append_pair(k, x);
                }
            }
        }
    }
    s.finish()
}

/// A path under `/api2/json` from raw segments, each percent-encoded (a UPID's `:`, `!` and
/// `@`, a mapping id, ...): `api_path(&["nodes", "pve", "status"])` is `/nodes/pve/status`.
pub fn api_path(segments: &[&str]) -> String {
    let mut p = String::new();
    for s in segments {
        p.push('/');
        p.extend(utf8_percent_encode(s, SEGMENT));
    }
    p
}

/// The first segment of an encoded path that URL normalisation would collapse (`.` and `..`,
/// which stay as they are in [`api_path`]'s encoding, and empty ones), if any.
pub fn collapsing_segment(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split('/').find(|s| {
        let lower = s.to_ascii_lowercase();
        s.is_empty() || [".", "..", "%2e", "%2e%2e", ".%2e", "%2e."].contains(&lower.as_str())
    })
}

/// A request ready to send, independent of any HTTP library.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiRequest {
    pub method: Method,
    /// Path under `/api2/json`, already encoded, starting with `/`.
    pub path: String,
    /// Encoded query string without `?`, for GET and DELETE.
    pub query: Option<String>,
    /// Form body for POST and PUT.
    pub body: Option<String>,
    /// The body holds a secret (login password): never printed.
    pub sensitive: bool,
}

impl fmt::Debug for ApiRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = match (&self.body, self.sensitive) {
            (Some(_), true) => Some("<redacted>"),
            (Some(b), false) => Some(b.as_str()),
            (None, _) => None,
        };
        f.debug_struct("ApiRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("body", &body)
            .finish()
    }
}

impl ApiRequest {
    /// Parameters go to the query (GET, DELETE) or the form body (POST, PUT).
    pub fn new(method: Method, path: impl Into<String>, params: &Params) -> Self {
        let encoded = encode_params(params);
        let (query, body) = if method.params_in_query() {
            ((!encoded.is_empty()).then_some(encoded), None)
        } else {
            (None, Some(encoded))
        };
        Self {
            method,
            path: path.into(),
            query,
            body,
            sensitive: false,
        }
    }
    pub fn get(path: impl Into<String>, params: &Params) -> Self {
        Self::new(Method::Get, path, params)
    }
    pub fn post(path: impl Into<String>, params: &Params) -> Self {
        Self::new(Method::Post, path, params)
    }
    pub fn put(path: impl Into<String>, params: &Params) -> Self {
        Self::new(Method::Put, path, params)
    }
    pub fn delete(path: impl Into<String>, params: &Params) -> Self {
        Self::new(Method::Delete, path, params)
    }

    /// `https://host:8006` + `/api2/json` + path + query.
    pub fn url(&self, base: &str) -> String {
        let mut u = format!("{}{}{}", base.trim_end_matches('/'), API_BASE, self.path);
        if let Some(q) = &self.query {
            u.push('?');
            u.push_str(q);
        }
        u
    }

    /// The content type of the body, if any.
    pub fn content_type(&self) -> Option<&'static str> {
        self.body
            .as_ref()
            .map(|_| "application/x-www-form-urlencoded")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_are_one_and_zero_and_lists_repeat_keys() {
        let p = Params::new()
            .str("id", "gpu0")
            .bool("mdev", false)
            .bool("live-migration-capable", true)
            .list(
                "map",
                [
                    "node=pve,path=0000:01:00.0,id=10de:2204,iommugroup=14",
                    "node=pve2,path=0000:02:00.0,id=10de:2204",
                ],
            );
        assert_eq!(
            encode_params(&p),
            "id=gpu0&mdev=0&live-migration-capable=1\
             &map=node%3Dpve%2Cpath%3D0000%3A01%3A00.0%2Cid%3D10de%3A2204%2Ciommugroup%3D14\
             &map=node%3Dpve2%2Cpath%3D0000%3A02%3A00.0%2Cid%3D10de%3A2204"
        );
    }

    #[test]
    fn get_and_delete_use_the_query_post_and_put_the_body() {
        let p = Params::new().int("vmid", 201).opt_str("x", None::<String>);
        let g = ApiRequest::get("/cluster/nextid", &p);
        assert_eq!(g.query.as_deref(), Some("vmid=201"));
        assert_eq!(g.body, None);
        assert_eq!(g.content_type(), None);
        assert_eq!(
            g.url("https://10.0.0.45:8006/"),
            "https://10.0.0.45:8006/api2/json/cluster/nextid?vmid=201"
        );
        let d = ApiRequest::delete("/nodes/pve/qemu/201", &Params::new().bool("purge", true));
        assert_eq!(d.query.as_deref(), Some("purge=1"));
        let post = ApiRequest::post("/nodes/pve/qemu", &p);
        assert_eq!(post.query, None);
        assert_eq!(post.body.as_deref(), Some("vmid=201"));
        assert_eq!(
            post.content_type(),
            Some("application/x-www-form-urlencoded")
        );
        let empty = ApiRequest::get("/version", &Params::new());
        assert_eq!(
            empty.url("https://h:8006"),
            "https://h:8006/api2/json/version"
        );
    }

    #[test]
    fn pci_listing_blacklist_semicolon_is_encoded() {
        let r = ApiRequest::get(
            "/nodes/pve/hardware/pci",
            &Params::new().str("pci-class-blacklist", ";"),
        );
        assert_eq!(r.query.as_deref(), Some("pci-class-blacklist=%3B"));
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(
            api_path(&[
                "nodes",
                "pve",
                "tasks",
                "UPID:pve:0012ABCD:0A1B2C3D:66F1E2D3:qmstart:100:root@pam!pvegpu:",
                "status"
            ]),
            "/nodes/pve/tasks/UPID%3Apve%3A0012ABCD%3A0A1B2C3D%3A66F1E2D3%3Aqmstart%3A100%3Aroot%40pam%21pvegpu%3A/status"
        );
        assert_eq!(
            api_path(&["cluster", "mapping", "pci", "a b/c"]),
            "/cluster/mapping/pci/a%20b%2Fc"
        );
    }

    #[test]
    fn only_get_is_retried_after_send() {
        assert!(Method::Get.retry_after_send());
        for m in [Method::Post, Method::Put, Method::Delete] {
            assert!(!m.retry_after_send(), "{m}");
        }
    }

    #[test]
    fn sensitive_body_is_redacted_in_debug() {
        let mut r = ApiRequest::post("/access/ticket", &Params::new().str("password", "hunter2"));
        r.sensitive = true;
        assert!(!format!("{r:?}").contains("hunter2"));
    }
}
