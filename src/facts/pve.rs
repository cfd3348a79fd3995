//! Proxmox VE's own view: its version, the guests on the node, HA and quorum.

use serde::Serialize;

/// `pve-manager/8.2.2/9355359cd7afbae4 (running kernel: 6.8.4-2-pve)` -> `8.2.2`.
pub fn parse_pveversion(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("pve-manager/"))?;
    Some(
        line.trim_start_matches("pve-manager/")
            .split('/')
            .next()?
            .to_string(),
    )
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Guest {
    pub vmid: u32,
    pub kind: GuestKind,
    pub name: String,
    pub status: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestKind {
    Vm,
    Container,
}

/// `qm list`: `VMID NAME STATUS MEM(MB) BOOTDISK(GB) PID`.
pub fn parse_qm_list(text: &str) -> Vec<Guest> {
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let vmid = w.first()?.parse().ok()?;
            Some(Guest {
                vmid,
                kind: GuestKind::Vm,
                name: w.get(1)?.to_string(),
                status: w.get(2)?.to_string(),
            })
        })
        .collect()
}

/// `pct list`: `VMID Status Lock Name`, where Lock is often empty.
pub fn parse_pct_list(text: &str) -> Vec<Guest> {
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let vmid = w.first()?.parse().ok()?;
            let status = w.get(1)?.to_string();
            Some(Guest {
                vmid,
                kind: GuestKind::Container,
                name: w.last()?.to_string(),
                status,
            })
        })
        .collect()
}

/// Guests that `ha-manager status` lists as HA resources (`service vm:100 (node, started)`).
pub fn parse_ha_resources(text: &str) -> Vec<u32> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("service "))
        .filter_map(|r| r.split_whitespace().next())
        .filter_map(|id| id.split_once(':').and_then(|(_, n)| n.parse().ok()))
        .collect()
}

/// `pvecm status`: Some(true/false) from `Quorate: Yes|No`; None when the node is standalone.
pub fn parse_quorate(text: &str) -> Option<bool> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Quorate:"))
        .map(|v| v.trim().eq_ignore_ascii_case("yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_guest_lists() {
        assert_eq!(
            parse_pveversion("pve-manager/8.2.2/9355359cd7afbae4 (running kernel: 6.8.4-2-pve)\n")
                .as_deref(),
            Some("8.2.2")
        );
        assert_eq!(
            parse_pveversion("bash: pveversion: command not found\n"),
            None
        );
        let qm = parse_qm_list(
            "      VMID NAME                 STATUS     MEM(MB)    BOOTDISK(GB) PID\n       201 triton-gpu           running    30720            100.00 12345\n       202 spare                stopped    2048              32.00 0\n",
        );
        assert_eq!(qm.len(), 2);
        assert_eq!(qm[0].vmid, 201);
        assert_eq!(qm[0].status, "running");
        let pct = parse_pct_list(
            "VMID       Status     Lock         Name\n100        running                 ct1\n",
        );
        assert_eq!(pct[0].name, "ct1");
        assert_eq!(
            parse_ha_resources(
                "quorum OK\nmaster pve1 (active, Mon Jan  1 00:00:00 2024)\nservice vm:100 (pve1, started)\n"
            ),
            vec![100]
        );
        assert_eq!(
            parse_quorate("Quorum information\n------------------\nQuorate:          Yes\n"),
            Some(true)
        );
        assert_eq!(
            parse_quorate(
                "Error: Corosync config '/etc/pve/corosync.conf' does not exist - is this node part of a cluster?\n"
            ),
            None
        );
    }
}
