//! UPIDs, the ids of Proxmox worker tasks:
//! `UPID:<node>:<pid %08X>:<pstart %08X>:<starttime %08X>:<type>:<id>:<user>:`.

use super::error::PveError;
use super::request::api_path;
use regex::Regex;
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

static UPID_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$",
    )
    .expect("UPID regex")
});

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upid {
    pub node: String,
    pub pid: u32,
    pub pstart: u64,
    pub starttime: u32,
    /// Worker type: `qmstart`, `qmcreate`, ...
    pub worker_type: String,
    /// The VMID, or empty.
    pub id: String,
    /// `root@pam`, or `root@pam!pvegpu` for a token.
    pub user: String,
    raw: String,
}

impl Upid {
    /// The string as the server sent it.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// `/nodes/{node}/tasks/{upid}/status`, UPID percent-encoded.
    pub fn status_path(&self) -> String {
        api_path(&["nodes", &self.node, "tasks", &self.raw, "status"])
    }

    /// `/nodes/{node}/tasks/{upid}/log`, UPID percent-encoded.
    pub fn log_path(&self) -> String {
        api_path(&["nodes", &self.node, "tasks", &self.raw, "log"])
    }
}

impl FromStr for Upid {
    type Err = PveError;
    fn from_str(s: &str) -> Result<Self, PveError> {
        let bad = || PveError::Decode {
            method: String::new(),
            path: String::new(),
            detail: format!("not a task id (UPID): {s:?}"),
        };
        let c = UPID_RE.captures(s).ok_or_else(bad)?;
        let hex32 = |i: usize| u32::from_str_radix(&c[i], 16).map_err(|_| bad());
        Ok(Upid {
            node: c[1].to_string(),
            pid: hex32(3)?,
            pstart: u64::from_str_radix(&c[4], 16).map_err(|_| bad())?,
            starttime: hex32(5)?,
            worker_type: c[6].to_string(),
            id: c[7].to_string(),
            user: c[8].to_string(),
            raw: s.to_string(),
        })
    }
}

impl fmt::Display for Upid {
    /// The canonical form (upper-case hex), as the server writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UPID:{}:{:08X}:{:08X}:{:08X}:{}:{}:{}:",
            self.node, self.pid, self.pstart, self.starttime, self.worker_type, self.id, self.user
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "UPID:pve:0012ABCD:0A1B2C3D:66F1E2D3:qmstart:100:root@pam:";

    #[test]
    fn parses_and_formats_the_notes_example() {
        let u: Upid = EXAMPLE.parse().unwrap();
        assert_eq!(u.node, "pve");
        assert_eq!(u.pid, 0x0012ABCD);
        assert_eq!(u.pstart, 0x0A1B2C3D);
        assert_eq!(u.starttime, 0x66F1E2D3);
        assert_eq!(u.worker_type, "qmstart");
        assert_eq!(u.id, "100");
        assert_eq!(u.user, "root@pam");
        assert_eq!(u.to_string(), EXAMPLE);
        assert_eq!(u.as_str(), EXAMPLE);
    }

    #[test]
    fn token_user_empty_id_and_nine_digit_pstart() {
        let s = "UPID:osm45:000A0001:1A1B2C3D4:66F1E2D3:qmcreate::root@pam!pvegpu:";
        let u: Upid = s.parse().unwrap();
        assert_eq!(u.pstart, 0x1A1B2C3D4);
        assert_eq!(u.id, "");
        assert_eq!(u.user, "root@pam!pvegpu");
        assert_eq!(u.to_string(), s);
        assert_eq!(
            u.status_path(),
            "/nodes/osm45/tasks/UPID%3Aosm45%3A000A0001%3A1A1B2C3D4%3A66F1E2D3%3Aqmcreate%3A%3Aroot%40pam%21pvegpu%3A/status"
        );
        assert!(u.log_path().ends_with("%3A/log"));
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "UPID:pve:0012ABCD:0A1B2C3D:66F1E2D3:qmstart:100:root@pam",
            "UPID:-pve:0012ABCD:0A1B2C3D:66F1E2D3:qmstart:100:root@pam:",
            "UPID:pve:12ABCD:0A1B2C3D:66F1E2D3:qmstart:100:root@pam:",
            "UPID:pve:0012ABCD:0A1B2C3D:66F1E2D3::100:root@pam:",
            "",
            "null",
        ] {
            assert!(s.parse::<Upid>().is_err(), "{s}");
        }
    }
}
