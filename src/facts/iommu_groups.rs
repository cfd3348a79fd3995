//! IOMMU group listings as people print them: `find /sys/kernel/iommu_groups -type l` paths,
//! the common shell loop in its three shapes (`IOMMU Group 1 00:01.0 ...` on one line, an
//! `IOMMU Group 1:` header over indented lspci lines, `Group:  1  0000:00:01.0 ...`).
//! A line that names a group whose number does not parse is an error, never `group ?`.

use super::fixed_regex;
use crate::pci::PciAddress;
use regex::Regex;
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// A group line whose group number or address is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} of the IOMMU group listing, `{text}`: the group number does not parse")]
pub struct GroupError {
    /// 1-based, within the listing.
    pub line: usize,
    pub text: String,
}

const ADDR: &str = r"(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]";

/// Captures `group` (any word, checked after) and, where the line holds one, `addr`.
static GROUP_LINE: LazyLock<Regex> = LazyLock::new(|| {
    fixed_regex(&format!(
        r"iommu_groups/(?P<g1>[^/\s]+)/devices/(?P<a1>\S+)|^IOMMU [Gg]roup (?P<g2>[^\s:]+):?(?:\s+(?P<a2>{ADDR}))?|^Group:?\s+(?P<g3>\S+)\s+(?P<a3>{ADDR})"
    ))
});
static INDENTED_DEVICE: LazyLock<Regex> =
    LazyLock::new(|| fixed_regex(&format!(r"^\s+(?P<a>{ADDR})\s")));

/// Each listed function and its group.
pub fn parse(text: &str) -> Result<BTreeMap<PciAddress, u32>, GroupError> {
    let mut out = BTreeMap::new();
    // the header form: `IOMMU Group 7:` owns the indented lines under it
    let mut header: Option<u32> = None;
    for (i, line) in text.lines().enumerate() {
        let bad = || GroupError {
            line: i + 1,
            text: line.trim().to_string(),
        };
        if let Some(c) = GROUP_LINE.captures(line.trim()) {
            let group = ["g1", "g2", "g3"]
                .iter()
                .find_map(|n| c.name(n))
                .map(|m| m.as_str())
                .unwrap_or("");
            let group: u32 = group.parse().map_err(|_| bad())?;
            match ["a1", "a2", "a3"].iter().find_map(|n| c.name(n)) {
                Some(a) => {
                    out.insert(a.as_str().parse().map_err(|_| bad())?, group);
                    header = None;
                }
                None => header = Some(group),
            }
            continue;
        }
        match (header, INDENTED_DEVICE.captures(line)) {
            (Some(g), Some(c)) => {
                out.insert(c["a"].parse().map_err(|_| bad())?, g);
            }
            (Some(_), None)
                if !line.trim().is_empty() && !line.starts_with(char::is_whitespace) =>
            {
                header = None
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group_of(text: &str, addr: &str) -> Option<u32> {
        parse(text).unwrap().get(&addr.parse().unwrap()).copied()
    }

    #[test]
    fn reads_the_four_shapes() {
        let paths = "/sys/kernel/iommu_groups/29/devices/0000:02:00.0\n";
        assert_eq!(group_of(paths, "0000:02:00.0"), Some(29));
        let one_line =
            "IOMMU Group 13 01:00.1 Audio device [0403]: NVIDIA Corporation [10de:10f0]\n";
        assert_eq!(group_of(one_line, "0000:01:00.1"), Some(13));
        let header = "IOMMU Group 14:\n\t02:00.0 VGA compatible controller [0300]: NVIDIA [10de:1b80]\n\t02:00.1 Audio device [0403]: NVIDIA [10de:10f0]\nIOMMU Group 15:\n\t03:00.0 Ethernet controller [0200]: Intel [8086:1533]\n";
        assert_eq!(group_of(header, "0000:02:00.1"), Some(14));
        assert_eq!(group_of(header, "0000:03:00.0"), Some(15));
        let table = "Group:  0   0000:00:00.0 Host bridge [0600]: AMD Starship/Matisse Root Complex [1022:1480]   Driver: \n";
        assert_eq!(group_of(table, "0000:00:00.0"), Some(0));
    }

    #[test]
    fn a_group_number_that_does_not_parse_is_an_error() {
        let err = parse("IOMMU Group 1 00:01.0 bridge\nIOMMU Group ? 01:00.0 VGA\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(
            err.to_string().contains("`IOMMU Group ? 01:00.0 VGA`"),
            "{err}"
        );
        assert!(parse("/sys/kernel/iommu_groups/x/devices/0000:01:00.0\n").is_err());
    }
}
