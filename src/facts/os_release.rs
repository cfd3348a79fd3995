//! `/etc/os-release`, read the same way on the host and in the guest.

use serde::Serialize;
use std::collections::BTreeMap;

/// `/etc/os-release`: the fields pvegpu reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OsRelease {
    pub id: String,
    pub version_id: String,
    pub pretty_name: String,
    pub codename: Option<String>,
}

/// Shell-style `KEY=value` lines; quotes around a value are dropped.
pub fn os_release(text: &str) -> OsRelease {
    let mut kv = BTreeMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            kv.insert(k.trim(), v.trim().trim_matches('"').trim_matches('\''));
        }
    }
    let get = |k: &str| kv.get(k).map(|v| v.to_string()).unwrap_or_default();
    OsRelease {
        id: get("ID"),
        version_id: get("VERSION_ID"),
        pretty_name: get("PRETTY_NAME"),
        codename: kv
            .get("VERSION_CODENAME")
            .filter(|v| !v.is_empty())
            .map(|v| v.to_string()),
    }
}
