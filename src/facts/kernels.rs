//! Installed kernels, their initramfs images, and which kernel the next boot will run.

use serde::Serialize;
use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstalledKernel {
    pub version: String,
    /// mtime of `/boot/initrd.img-<version>`; None when it has no initramfs.
    pub initrd_mtime: Option<i64>,
}

/// Compare kernel versions by their numeric runs: 6.8.12-10-pve > 6.8.12-8-pve > 6.5.13-6-pve.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let nums = |s: &str| -> Vec<u64> {
        s.split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    nums(a).cmp(&nums(b)).then_with(|| a.cmp(b))
}

/// `major.minor` of a kernel version, e.g. (6, 8) for 6.8.12-10-pve.
pub fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut it = version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// One kernel line of a probe: its version and its `key=value` words. A
/// `/boot/vmlinuz-<version>` path stands for its version; a line whose first word is no
/// version (an error message) names no kernel.
pub fn kernel_line(line: &str) -> Option<(String, impl Iterator<Item = (&str, &str)>)> {
    let mut words = line.split_whitespace();
    let first = words.next()?;
    let base = first.rsplit('/').next().unwrap_or(first);
    let version = base.strip_prefix("vmlinuz-").unwrap_or(base);
    version
        .starts_with(|c: char| c.is_ascii_digit())
        .then(|| (version.to_string(), words.filter_map(|w| w.split_once('='))))
}

/// Sorts oldest first and drops a kernel listed twice.
pub fn sort_kernels<T>(kernels: &mut Vec<T>, version: impl Fn(&T) -> &str) {
    kernels.sort_by(|a, b| compare_versions(version(a), version(b)));
    kernels.dedup_by(|a, b| version(a) == version(b));
}

/// The probe's `kernels` section: `<version> vmlinuz=yes|no initrd=<mtime>|none`.
pub fn parse(text: &str) -> Vec<InstalledKernel> {
    let mut out: Vec<InstalledKernel> = text
        .lines()
        .filter_map(|line| {
            let (version, attrs) = kernel_line(line)?;
            let mut vmlinuz = true;
            let mut initrd_mtime = None;
            for (k, v) in attrs {
                match k {
                    "vmlinuz" => vmlinuz = v == "yes",
                    "initrd" => initrd_mtime = v.parse().ok(),
                    _ => {}
                }
            }
            // a /lib/modules directory left behind by a removed kernel is not a bootable kernel
            vmlinuz.then_some(InstalledKernel {
                version,
                initrd_mtime,
            })
        })
        .collect();
    sort_kernels(&mut out, |k| &k.version);
    out
}

/// The pinned kernel from `proxmox-boot-tool kernel list`, if any.
pub fn pbt_pinned(list: &str) -> Option<String> {
    let mut lines = list.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line.to_ascii_lowercase().starts_with("pinned kernel") {
            if let Some(v) = line
                .split_once(':')
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
            {
                return Some(v.to_string());
            }
            return lines
                .next()
                .filter(|v| !v.is_empty() && *v != "None.")
                .map(str::to_string);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically() {
        let mut v = vec![
            "6.8.12-8-pve",
            "6.8.12-10-pve",
            "6.5.13-6-pve",
            "6.8.4-3-pve",
        ];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(
            v,
            vec![
                "6.5.13-6-pve",
                "6.8.4-3-pve",
                "6.8.12-8-pve",
                "6.8.12-10-pve"
            ]
        );
        assert_eq!(major_minor("6.1.0-50-amd64"), Some((6, 1)));
    }

    #[test]
    fn kernels_without_vmlinuz_are_skipped() {
        let k = parse(
            "6.8.12-10-pve vmlinuz=yes initrd=1700000000\n6.8.8-2-pve vmlinuz=no initrd=none\n6.5.13-6-pve vmlinuz=yes initrd=none\n",
        );
        assert_eq!(k.len(), 2);
        assert_eq!(k[0].version, "6.5.13-6-pve");
        assert_eq!(k[0].initrd_mtime, None);
        assert_eq!(k[1].initrd_mtime, Some(1700000000));
    }

    #[test]
    fn pinned_kernel() {
        let list = "Manually selected kernels:\nNone.\n\nAutomatically selected kernels:\n6.8.12-10-pve\n6.8.12-8-pve\n\nPinned kernel:\n6.8.12-8-pve\n";
        assert_eq!(pbt_pinned(list).as_deref(), Some("6.8.12-8-pve"));
        assert_eq!(
            pbt_pinned("Automatically selected kernels:\n6.8.12-10-pve\n"),
            None
        );
    }
}
