//! The version-like values of the tables: compute capabilities, CUDA versions, driver
//! versions. Each keeps the text it was read from, so tables and output show the sources'
//! spelling, and compares by its numbers.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VersionError {
    #[error("`{0}` is not a compute capability; write it as `major.minor`, e.g. `6.1`")]
    Cc(String),
    #[error("`{0}` is not a CUDA version; write it as `major.minor[.patch]`, e.g. `12.2.2`")]
    Cuda(String),
    #[error(
        "`{0}` is not an NVIDIA driver version; write it as `nvidia-smi` prints it (`535.261.03`) or as a branch (`535`)"
    )]
    Driver(String),
}

/// A CUDA compute capability such as 6.1 (`sm_61`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cc {
    pub major: u8,
    pub minor: u8,
}

impl Cc {
    pub const fn new(major: u8, minor: u8) -> Self {
        Cc { major, minor }
    }

    /// From an `sm_` target without the prefix: `61` is 6.1, `120` is 12.0.
    pub fn from_sm(sm: &str) -> Option<Cc> {
        let digits: String = sm.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.len() < 2 || digits.len() != sm.len() {
            return None;
        }
        let (major, minor) = digits.split_at(digits.len() - 1);
        Some(Cc::new(major.parse().ok()?, minor.parse().ok()?))
    }
}

impl FromStr for Cc {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || VersionError::Cc(s.to_string());
        let (a, b) = s.trim().split_once('.').ok_or_else(bad)?;
        Ok(Cc::new(
            a.parse().map_err(|_| bad())?,
            b.parse().map_err(|_| bad())?,
        ))
    }
}

impl fmt::Display for Cc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A CUDA version as the sources spell it: `12.2.2`, `12.4`, `12.8.0.038`,
/// `11.7 Update 1 Preview` (= 11.7.1).
#[derive(Debug, Clone)]
pub struct CudaVersion {
    pub raw: String,
    pub major: u32,
    pub minor: u32,
    pub patch: Option<u32>,
}

impl CudaVersion {
    /// (major, minor): what a driver's "max CUDA" speaks about.
    pub fn minor_key(&self) -> (u32, u32) {
        (self.major, self.minor)
    }

    fn key(&self) -> (u32, u32, u32) {
        (self.major, self.minor, self.patch.unwrap_or(0))
    }
}

impl FromStr for CudaVersion {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || VersionError::Cuda(s.to_string());
        let mut words = s.split_whitespace();
        let head = words.next().ok_or_else(bad)?;
        let nums: Vec<u32> = head
            .split('.')
            .map(|p| p.parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        let (major, minor) = match nums.as_slice() {
            [a, b, ..] => (*a, *b),
            _ => return Err(bad()),
        };
        let mut patch = nums.get(2).copied();
        if let (Some("Update"), Some(n)) = (words.next(), words.next()) {
            patch = Some(n.parse().map_err(|_| bad())?);
        }
        Ok(CudaVersion {
            raw: s.to_string(),
            major,
            minor,
            patch,
        })
    }
}

impl PartialEq for CudaVersion {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for CudaVersion {}
impl PartialOrd for CudaVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for CudaVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl fmt::Display for CudaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// An NVIDIA driver version (`535.261.03`) or a bare branch (`535`, `R610 branch`). Package
/// versions parse too: `535.309.01-0+deb12u1` is 535.309.01.
#[derive(Debug, Clone)]
pub struct DriverVersion {
    pub raw: String,
    pub parts: Vec<u32>,
}

impl DriverVersion {
    pub fn branch(&self) -> u32 {
        self.parts[0]
    }

    /// Only the branch is known (`535`): taken as that branch's current release.
    pub fn is_branch_only(&self) -> bool {
        self.parts.len() == 1
    }

    /// Does this driver satisfy `floor`? A bare branch compares by branch only.
    pub fn at_least(&self, floor: &DriverVersion) -> bool {
        if self.is_branch_only() {
            return self.branch() >= floor.branch();
        }
        self.cmp_parts(floor) != Ordering::Less
    }

    fn cmp_parts(&self, other: &DriverVersion) -> Ordering {
        let n = self.parts.len().max(other.parts.len());
        for i in 0..n {
            let a = self.parts.get(i).copied().unwrap_or(0);
            let b = other.parts.get(i).copied().unwrap_or(0);
            match a.cmp(&b) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        Ordering::Equal
    }

    /// The version without a package revision or comment: `535.309.01`.
    pub fn plain(&self) -> String {
        numeric_head(&self.raw).to_string()
    }

    /// A bare branch, as `R535` prints.
    pub fn branch_only(branch: u32) -> DriverVersion {
        DriverVersion {
            raw: format!("R{branch}"),
            parts: vec![branch],
        }
    }
}

/// `R610 branch` -> `610`, `535.309.01-0+deb12u1` -> `535.309.01`.
fn numeric_head(s: &str) -> &str {
    let t = s.trim();
    let t = t.strip_prefix(['R', 'r']).unwrap_or(t);
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    t[..end].trim_end_matches('.')
}

impl FromStr for DriverVersion {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || VersionError::Driver(s.to_string());
        let head = numeric_head(s);
        if head.is_empty() {
            return Err(bad());
        }
        let parts: Vec<u32> = head
            .split('.')
            .map(|p| p.parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        Ok(DriverVersion {
            raw: s.to_string(),
            parts,
        })
    }
}

impl PartialEq for DriverVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp_parts(other) == Ordering::Equal
    }
}
impl Eq for DriverVersion {}
impl PartialOrd for DriverVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for DriverVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_parts(other)
    }
}

/// `R535` for a bare branch, else the plain version (`535.309.01`); `raw` keeps the text.
impl fmt::Display for DriverVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_branch_only() {
            write!(f, "R{}", self.branch())
        } else {
            f.write_str(&self.plain())
        }
    }
}

macro_rules! serde_via_str {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_via_str!(Cc);
serde_via_str!(CudaVersion);
serde_via_str!(DriverVersion);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_capabilities_order_numerically() {
        let a: Cc = "6.1".parse().unwrap();
        let b: Cc = "12.0".parse().unwrap();
        assert!(a < b);
        assert_eq!(Cc::from_sm("61"), Some(Cc::new(6, 1)));
        assert_eq!(Cc::from_sm("120"), Some(Cc::new(12, 0)));
        assert_eq!(Cc::from_sm("100f"), None);
        assert!("6".parse::<Cc>().is_err());
    }

    #[test]
    fn cuda_versions_as_the_sources_spell_them() {
        let v: CudaVersion = "11.7 Update 1 Preview".parse().unwrap();
        assert_eq!((v.major, v.minor, v.patch), (11, 7, Some(1)));
        let w: CudaVersion = "12.8.0.038".parse().unwrap();
        assert_eq!((w.major, w.minor, w.patch), (12, 8, Some(0)));
        assert_eq!(w.to_string(), "12.8.0.038");
        assert!("12.2.2".parse::<CudaVersion>().unwrap() > "12.2".parse().unwrap());
        assert!("twelve".parse::<CudaVersion>().is_err());
    }

    #[test]
    fn driver_versions_and_branches() {
        let d: DriverVersion = "535.309.01-0+deb12u1".parse().unwrap();
        assert_eq!(d.plain(), "535.309.01");
        assert!(d.at_least(&"535.104.05".parse().unwrap()));
        let old: DriverVersion = "535.54.03".parse().unwrap();
        assert!(!old.at_least(&"535.104.05".parse().unwrap()));
        let branch: DriverVersion = "R610 branch".parse().unwrap();
        assert!(branch.is_branch_only());
        assert_eq!(branch.branch(), 610);
        assert_eq!(branch.to_string(), "R610");
        let b535: DriverVersion = "535".parse().unwrap();
        assert!(b535.at_least(&"535.86".parse().unwrap()));
        assert!(!b535.at_least(&"545.23".parse().unwrap()));
        assert!("nvidia".parse::<DriverVersion>().is_err());
    }
}
