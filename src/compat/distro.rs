//! The guest distributions pvegpu converges.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "`{0}` is not a distribution pvegpu knows; use one of debian-12, debian-13, ubuntu-22.04, ubuntu-24.04, ubuntu-26.04"
)]
pub struct DistroError(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Distro {
    Debian12,
    Debian13,
    Ubuntu2204,
    Ubuntu2404,
    Ubuntu2604,
}

impl Distro {
    /// Every release the tables carry packages for (Debian's sid and experimental are rolling
    /// suites, not releases a guest is installed with, so they are left out).
    pub const ALL: [Distro; 5] = [
        Distro::Debian12,
        Distro::Debian13,
        Distro::Ubuntu2204,
        Distro::Ubuntu2404,
        Distro::Ubuntu2604,
    ];

    /// The releases the guest phase converges. Ubuntu 26.04 is answered by `compat` only: no
    /// NVIDIA CUDA repository for it is in `data/guest/nvidia-repos.json` and no guest run
    /// has proven it.
    pub fn guest_phase(self) -> bool {
        self != Distro::Ubuntu2604
    }

    /// `debian` or `ubuntu`, as drivers.json `distro_packages[].distro` writes it.
    pub fn family(self) -> &'static str {
        match self {
            Distro::Debian12 | Distro::Debian13 => "debian",
            Distro::Ubuntu2204 | Distro::Ubuntu2404 | Distro::Ubuntu2604 => "ubuntu",
        }
    }

    pub fn is_debian(self) -> bool {
        self.family() == "debian"
    }

    pub fn release(self) -> &'static str {
        match self {
            Distro::Debian12 => "12",
            Distro::Debian13 => "13",
            Distro::Ubuntu2204 => "22.04",
            Distro::Ubuntu2404 => "24.04",
            Distro::Ubuntu2604 => "26.04",
        }
    }

    pub fn codename(self) -> &'static str {
        match self {
            Distro::Debian12 => "bookworm",
            Distro::Debian13 => "trixie",
            Distro::Ubuntu2204 => "jammy",
            Distro::Ubuntu2404 => "noble",
            Distro::Ubuntu2604 => "resolute",
        }
    }

    /// `debian-12`: the spelling the CLI takes and JSON prints.
    pub fn id(self) -> String {
        format!("{}-{}", self.family(), self.release())
    }
}

impl FromStr for Distro {
    type Err = DistroError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        Distro::ALL
            .into_iter()
            .find(|d| {
                t == d.id()
                    || t == d.codename()
                    || t == format!("{}{}", d.family(), d.release())
                    || t == format!("{} {}", d.family(), d.release())
            })
            .ok_or_else(|| DistroError(s.to_string()))
    }
}

impl fmt::Display for Distro {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let family = if self.is_debian() { "Debian" } else { "Ubuntu" };
        write!(f, "{family} {} ({})", self.release(), self.codename())
    }
}

impl Serialize for Distro {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_codenames() {
        assert_eq!("debian-12".parse(), Ok(Distro::Debian12));
        assert_eq!("Trixie".parse(), Ok(Distro::Debian13));
        assert_eq!("ubuntu-24.04".parse(), Ok(Distro::Ubuntu2404));
        assert_eq!(Distro::Ubuntu2204.to_string(), "Ubuntu 22.04 (jammy)");
        assert_eq!("resolute".parse(), Ok(Distro::Ubuntu2604));
        assert!("debian-11".parse::<Distro>().is_err());
    }
}
