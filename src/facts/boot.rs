//! Which boot loader a node uses, read the way Proxmox's docs advise: `proxmox-boot-tool status`
//! and `efibootmgr -v`, with /etc/default/grub as the fallback for plain Debian GRUB.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum BootLoader {
    /// systemd-boot on ESPs kept by proxmox-boot-tool; cmdline in /etc/kernel/cmdline.
    SystemdBoot,
    /// GRUB whose ESP copies proxmox-boot-tool keeps (e.g. ZFS root with Secure Boot).
    ProxmoxGrub,
    /// GRUB maintained by update-grub.
    Grub,
    Unknown {
        reason: String,
    },
}

impl BootLoader {
    pub fn describe(&self) -> String {
        match self {
            BootLoader::SystemdBoot => "systemd-boot via proxmox-boot-tool".into(),
            BootLoader::ProxmoxGrub => "GRUB via proxmox-boot-tool".into(),
            BootLoader::Grub => "GRUB".into(),
            BootLoader::Unknown { reason } => format!("unknown ({reason})"),
        }
    }

    pub fn refresh_command(&self) -> Option<&'static str> {
        match self {
            BootLoader::SystemdBoot | BootLoader::ProxmoxGrub => Some("proxmox-boot-tool refresh"),
            BootLoader::Grub => Some("update-grub"),
            BootLoader::Unknown { .. } => None,
        }
    }
}

/// What `proxmox-boot-tool status` says each ESP is configured with ("uefi" or "grub").
pub fn pbt_modes(status: &str) -> Vec<String> {
    status
        .lines()
        .filter_map(|l| l.split_once("is configured with: ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|mode| mode.trim_end_matches(',').to_string())
        .collect()
}

/// The loader file of the entry `efibootmgr -v` says the machine booted from.
pub fn efi_current_loader(efibootmgr: &str) -> Option<String> {
    let current = efibootmgr
        .lines()
        .find_map(|l| l.strip_prefix("BootCurrent:"))?
        .trim()
        .to_string();
    let entry = efibootmgr
        .lines()
        .find(|l| l.starts_with(&format!("Boot{current}")))?;
    let file = entry.split("File(").nth(1)?.split(')').next()?;
    Some(file.rsplit(['\\', '/']).next()?.to_ascii_lowercase())
}

pub fn detect(
    pbt_status: Option<&str>,
    efibootmgr: Option<&str>,
    has_grub_defaults: bool,
) -> BootLoader {
    let modes = pbt_status.map(pbt_modes).unwrap_or_default();
    let loader = efibootmgr.and_then(efi_current_loader);
    let efi_says_systemd = loader
        .as_deref()
        .is_some_and(|l| l.contains("systemd-boot"));
    let efi_says_grub = loader
        .as_deref()
        .is_some_and(|l| l.contains("grub") || l.contains("shim"));
    if !modes.is_empty() {
        let all = |m: &str| modes.iter().all(|x| x == m);
        return if all("uefi") && !efi_says_grub {
            BootLoader::SystemdBoot
        } else if all("grub") && !efi_says_systemd {
            BootLoader::ProxmoxGrub
        } else {
            BootLoader::Unknown {
                reason: format!(
                    "proxmox-boot-tool reports ESPs configured with {} and the firmware booted {}",
                    modes.join(", "),
                    loader.as_deref().unwrap_or("an unknown loader")
                ),
            }
        };
    }
    if efi_says_systemd {
        return BootLoader::Unknown {
            reason: "the firmware booted systemd-boot but proxmox-boot-tool manages no ESP".into(),
        };
    }
    if has_grub_defaults {
        return BootLoader::Grub;
    }
    BootLoader::Unknown {
        reason: "neither proxmox-boot-tool nor /etc/default/grub is present".into(),
    }
}

/// The boot loader as a transcript shows it: `update-grub`'s and `proxmox-boot-tool`'s output
/// (its systemd-boot mode "creating boot-entry"; its GRUB mode runs grub-install), and the
/// `initrd=\EFI\proxmox\...` word systemd-boot puts on the command line.
pub fn from_output(output: &str, cmdline: &[String]) -> Option<BootLoader> {
    let pbt = output.contains("Copying and configuring kernels on")
        || output.contains("is configured with:");
    let systemd_boot = output.contains("creating boot-entry")
        || output.contains("is configured with: uefi")
        || cmdline
            .iter()
            .any(|w| w.starts_with("initrd=\\EFI\\proxmox\\"));
    let grub = output.contains("Generating grub configuration file")
        || output.contains("is configured with: grub");
    match (pbt, systemd_boot, grub) {
        (_, true, false) => Some(BootLoader::SystemdBoot),
        (true, false, true) => Some(BootLoader::ProxmoxGrub),
        (false, false, true) => Some(BootLoader::Grub),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_STATUS: &str = "Re-executing '/usr/sbin/proxmox-boot-tool' in new private mount namespace..\nSystem currently booted with uefi\nE337-49A4 is configured with: uefi (versions: 6.5.13-6-pve, 6.8.12-10-pve, 6.8.12-8-pve)\n";

    #[test]
    fn systemd_boot_from_pbt() {
        assert_eq!(pbt_modes(SEED_STATUS), vec!["uefi"]);
        assert_eq!(
            detect(Some(SEED_STATUS), None, false),
            BootLoader::SystemdBoot
        );
    }

    #[test]
    fn grub_under_pbt_and_plain_grub() {
        let s = "System currently booted with uefi\n0A1B-2C3D is configured with: grub (versions: 6.8.12-4-pve)\n";
        assert_eq!(detect(Some(s), None, true), BootLoader::ProxmoxGrub);
        assert_eq!(detect(None, None, true), BootLoader::Grub);
    }

    #[test]
    fn contradictions_are_unknown() {
        let efi = "BootCurrent: 0001\nBoot0001* Linux Boot Manager\tHD(2,GPT,x,0x800,0x100000)/File(\\EFI\\systemd\\systemd-bootx64.efi)\n";
        assert_eq!(
            efi_current_loader(efi).as_deref(),
            Some("systemd-bootx64.efi")
        );
        assert!(matches!(
            detect(None, Some(efi), true),
            BootLoader::Unknown { .. }
        ));
        assert!(matches!(
            detect(None, None, false),
            BootLoader::Unknown { .. }
        ));
    }
}
