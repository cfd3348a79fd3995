//! Pure parsers for the guest probe's sections, one function per command's output.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

use crate::facts::kernels::{kernel_line, sort_kernels};
pub use crate::facts::os_release::{OsRelease, os_release};

/// One kernel of the probe's `guest-kernels` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestKernel {
    pub version: String,
    /// `/boot/vmlinuz-<version>` exists: the kernel can boot (a bare /lib/modules directory is
    /// what a removed kernel leaves behind).
    pub bootable: bool,
    /// `/lib/modules/<version>/build` points at headers DKMS can build against.
    pub headers: bool,
    /// The NVIDIA module file installed for this kernel, if any.
    pub nvidia_module: Option<String>,
    /// Whether that module carries a signature (None when there is no module).
    pub module_signed: Option<bool>,
    /// The initramfs image's mtime: `Some(None)` when the kernel has no image, None when the
    /// probe did not say (older probes, verify's listing).
    pub initrd_mtime: Option<Option<i64>>,
}

/// `<version> vmlinuz=yes headers=no nvidia=<path>|none signed=yes|no|none initrd=<mtime>|none`,
/// sorted oldest first; a bare version or `/boot/vmlinuz-<version>` (verify's listing) is a
/// bootable kernel.
pub fn guest_kernels(text: &str) -> Vec<GuestKernel> {
    let mut out: Vec<GuestKernel> = text
        .lines()
        .filter_map(|line| {
            let (version, attrs) = kernel_line(line)?;
            let mut k = GuestKernel {
                version,
                bootable: true,
                headers: false,
                nvidia_module: None,
                module_signed: None,
                initrd_mtime: None,
            };
            for attr in attrs {
                match attr {
                    ("vmlinuz", v) => k.bootable = v == "yes",
                    ("headers", v) => k.headers = v == "yes",
                    ("nvidia", v) if v != "none" => k.nvidia_module = Some(v.to_string()),
                    ("signed", "yes") => k.module_signed = Some(true),
                    ("signed", "no") => k.module_signed = Some(false),
                    ("initrd", "none") => k.initrd_mtime = Some(None),
                    ("initrd", v) => k.initrd_mtime = v.parse().ok().map(Some),
                    _ => {}
                }
            }
            Some(k)
        })
        .collect();
    sort_kernels(&mut out, |k| &k.version);
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecureBoot {
    Enabled,
    Disabled,
    /// BIOS boot (SeaBIOS VM): there is no Secure Boot.
    NotUefi,
    Unknown,
}

/// `mokutil --sb-state` (preferred, it is what shim reads) else the SecureBoot EFI variable
/// (`od -An -tu1`: four attribute bytes, then the value).
pub fn secure_boot(mokutil: Option<&str>, efivar: Option<&str>) -> SecureBoot {
    if let Some(text) = mokutil {
        let t = text.to_ascii_lowercase();
        if t.contains("secureboot enabled") {
            return SecureBoot::Enabled;
        }
        if t.contains("secureboot disabled") {
            return SecureBoot::Disabled;
        }
        if t.contains("efi variables are not supported") {
            return SecureBoot::NotUefi;
        }
    }
    match efivar.map(str::trim) {
        Some("bios") => SecureBoot::NotUefi,
        Some("uefi-no-variable") => SecureBoot::Disabled,
        Some(bytes) => match bytes.split_whitespace().last() {
            Some("1") => SecureBoot::Enabled,
            Some("0") => SecureBoot::Disabled,
            _ => SecureBoot::Unknown,
        },
        None => SecureBoot::Unknown,
    }
}

/// A machine-owner key DKMS signs with, and whether shim trusts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MokKey {
    pub path: String,
    pub enrolled: bool,
}

/// The probe's `mok-keys`: `key <path>: <first line of mokutil --test-key>`.
pub fn mok_keys(text: &str) -> Vec<MokKey> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("key ")?;
            let (path, said) = rest.split_once(": ")?;
            Some(MokKey {
                path: path.to_string(),
                enrolled: said.contains("is already enrolled"),
            })
        })
        .collect()
}

/// One `dkms status` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DkmsEntry {
    pub module: String,
    pub version: String,
    /// None for modules only `added` (not built for any kernel).
    pub kernel: Option<String>,
    pub state: String,
}

/// Both spellings: dkms 2 `nvidia, 460.91.03, 5.11.0-36-generic, x86_64: installed` and
/// dkms 3 `nvidia/510.47.03, 5.15.0-27-generic, x86_64: installed` (`added` lines carry no
/// kernel). Warnings in parentheses after the state are dropped.
pub fn dkms_status(text: &str) -> Vec<DkmsEntry> {
    text.lines()
        .filter_map(|line| {
            let (head, state) = line.rsplit_once(": ")?;
            let state = state.split(" (").next().unwrap_or(state).trim().to_string();
            let mut parts: Vec<&str> = head.split(',').map(str::trim).collect();
            let (module, version) = match parts[0].split_once('/') {
                Some((m, v)) => {
                    parts.remove(0);
                    (m.to_string(), v.to_string())
                }
                None if parts.len() >= 2 => {
                    let m = parts.remove(0).to_string();
                    (m, parts.remove(0).to_string())
                }
                None => return None,
            };
            if module.is_empty() || version.is_empty() {
                return None;
            }
            Some(DkmsEntry {
                module,
                version,
                kernel: parts.first().map(|k| k.to_string()),
                state,
            })
        })
        .collect()
}

pub use crate::facts::nvidia_smi::{SmiGpu, smi_bus_address};

/// The GPU rows of the query (see [`crate::facts::nvidia_smi::query`]).
pub fn nvidia_smi(text: &str) -> Vec<SmiGpu> {
    crate::facts::nvidia_smi::query(text).gpus
}

/// An apt source entry, from a one-line `.list` or a deb822 `.sources` stanza.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AptSource {
    pub file: String,
    pub types: Vec<String>,
    pub uris: Vec<String>,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    pub signed_by: Option<String>,
    pub enabled: bool,
}

impl AptSource {
    pub fn has_uri_prefix(&self, prefix: &str) -> bool {
        self.uris.iter().any(|u| {
            u.trim_end_matches('/')
                .starts_with(prefix.trim_end_matches('/'))
        })
    }
}

/// A `.list` file: `deb [options] uri suite [component...]`; comments and `deb-src` lines are
/// kept out (pvegpu installs binaries only).
pub fn sources_list(file: &str, text: &str) -> Vec<AptSource> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or("").trim();
            let rest = line.strip_prefix("deb ")?.trim();
            let (options, rest) = match rest.strip_prefix('[') {
                Some(r) => {
                    let (o, r) = r.split_once(']')?;
                    (o.trim(), r.trim())
                }
                None => ("", rest),
            };
            let mut words = rest.split_whitespace();
            let uri = words.next()?.to_string();
            let suite = words.next()?.to_string();
            let signed_by = options.split_whitespace().find_map(|o| {
                o.strip_prefix("signed-by=")
                    .or_else(|| o.strip_prefix("Signed-By="))
                    .map(str::to_string)
            });
            Some(AptSource {
                file: file.to_string(),
                types: vec!["deb".into()],
                uris: vec![uri],
                suites: vec![suite],
                components: words.map(str::to_string).collect(),
                signed_by,
                enabled: true,
            })
        })
        .collect()
}

/// A deb822 `.sources` file: stanzas separated by blank lines; `#` lines are comments.
pub fn deb822_sources(file: &str, text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    let mut flush = |fields: &mut BTreeMap<String, String>| {
        if fields.is_empty() {
            return;
        }
        let words = |k: &str| -> Vec<String> {
            fields
                .get(k)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let types = words("types");
        if types.iter().any(|t| t == "deb") {
            out.push(AptSource {
                file: file.to_string(),
                types: types.clone(),
                uris: words("uris"),
                suites: words("suites"),
                components: words("components"),
                // a multi-line Signed-By holds an inline key, not a path
                signed_by: fields
                    .get("signed-by")
                    .map(|v| v.trim())
                    .filter(|v| !v.contains('\n') && !v.is_empty())
                    .map(str::to_string),
                enabled: fields
                    .get("enabled")
                    .is_none_or(|v| !v.trim().eq_ignore_ascii_case("no")),
            });
        }
        fields.clear();
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut fields);
            last = None;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            if let Some(k) = &last {
                let v = fields.entry(k.clone()).or_default();
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            fields.insert(k.clone(), v.trim().to_string());
            last = Some(k);
        }
    }
    flush(&mut fields);
    out
}

/// `ls -1 dir1 dir2`: `dir:` headers, then names.
pub fn keyrings(text: &str) -> BTreeSet<String> {
    let mut dir = String::new();
    let mut out = BTreeSet::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(d) = line.strip_suffix(':') {
            dir = d.to_string();
        } else if !dir.is_empty() && !line.contains(": ") {
            out.insert(format!("{dir}/{line}"));
        }
    }
    out
}

/// A package line of `dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Version}\n'`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    pub version: String,
    /// dpkg's status letters (`ii`, `rc`, `iU`, ...).
    pub status: String,
}

impl Package {
    /// Unpacked and configured.
    pub fn installed(&self) -> bool {
        self.status.as_bytes().get(1) == Some(&b'i')
    }

    /// Left between unpacking and configuring (half-installed, unpacked, half-configured,
    /// awaiting or pending triggers): a dpkg run stopped on it.
    pub fn unfinished(&self) -> bool {
        self.status
            .as_bytes()
            .get(1)
            .is_some_and(|s| b"HUFWt".contains(s))
    }
}

/// The `dpkg-audit` section: dpkg's journal entries and `dpkg --audit`'s report, one finding
/// per line (empty when dpkg finished its last run).
pub fn dpkg_audit(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

pub fn packages(text: &str) -> BTreeMap<String, Package> {
    text.lines()
        .filter_map(|line| {
            let mut w = line.split_whitespace();
            let status = w.next()?;
            if !(2..=3).contains(&status.len()) || !status.chars().all(|c| c.is_ascii_alphabetic())
            {
                return None;
            }
            let name = w.next()?;
            Some((
                name.split(':').next().unwrap_or(name).to_string(),
                Package {
                    version: w.next().unwrap_or("").to_string(),
                    status: status.to_string(),
                },
            ))
        })
        .collect()
}

/// `apt-mark showhold`: one package per line.
pub fn holds(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains(' '))
        .map(|l| l.split(':').next().unwrap_or(l).to_string())
        .collect()
}

/// The version word of `docker --version` (`Docker version 24.0.7, build afdd53b`),
/// `podman --version` (`podman version 4.3.1`) or `nvidia-ctk --version` (`NVIDIA Container
/// Toolkit CLI version 1.14.3`).
/// `major.minor` of a version (`4.3.1+ds1-8` -> (4, 3)), for comparing against a minimum.
pub fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim().split(['.', '-', '+', '~']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

pub fn tool_version(text: &str) -> Option<String> {
    let first = text.lines().next()?;
    let after = first.split(" version ").nth(1)?;
    let v = after
        .split([',', ' '])
        .next()?
        .trim()
        .trim_start_matches('v');
    v.chars()
        .next()
        .filter(char::is_ascii_digit)
        .map(|_| v.to_string())
}

pub use crate::facts::cdi::CdiSpec;

/// The guest probe's excerpt of a CDI spec (see [`crate::facts::cdi::parse_excerpt`]).
pub fn cdi_spec(path: &str, text: &str) -> CdiSpec {
    crate::facts::cdi::parse_excerpt(path, text)
}

/// `systemctl show -p NeedDaemonReload -p ActiveEnterTimestamp --timestamp=unix <unit>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ServiceSince {
    /// When the unit last became active (Unix seconds); None: never, or systemd did not say.
    pub active_since: Option<i64>,
    /// The unit file changed on disk since systemd read it.
    pub needs_reload: bool,
}

pub fn service_since(text: &str) -> ServiceSince {
    let mut out = ServiceSince::default();
    for line in text.lines() {
        match line.trim().split_once('=') {
            Some(("NeedDaemonReload", v)) => out.needs_reload = v == "yes",
            Some(("ActiveEnterTimestamp", v)) => {
                out.active_since = v.strip_prefix('@').and_then(|t| t.parse().ok())
            }
            _ => {}
        }
    }
    out
}

/// The runtime names of `docker info --format '{{json .Runtimes}}'` (one JSON object keyed by
/// name, e.g. `{"io.containerd.runc.v2":{"path":"runc"},"nvidia":{"path":"nvidia-container-runtime"},"runc":{"path":"runc"}}`);
/// none when the daemon did not answer.
pub fn docker_runtimes(text: &str) -> BTreeSet<String> {
    text.lines()
        .find(|l| l.trim_start().starts_with('{'))
        .and_then(|l| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(l).ok())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// One line of `docker|podman ps -a --format '{{.Names}}\t{{.Image}}\t{{.State}}\t{{.Status}}'`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    pub name: String,
    pub image: String,
    pub state: String,
    pub status: String,
}

pub fn containers(text: &str) -> Vec<Container> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 4).then(|| Container {
                name: f[0].to_string(),
                image: f[1].to_string(),
                state: f[2].to_string(),
                status: f[3].to_string(),
            })
        })
        .collect()
}

/// An ONNX file in the model repository (`<repo>/<model>/<version>/<file>.onnx`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelFile {
    pub path: String,
    pub model: String,
    pub version: String,
    pub size: u64,
}

/// `find -printf '%s %p\n'` under the repository.
pub fn model_files(repo: &str, text: &str) -> Vec<ModelFile> {
    let repo = repo.trim_end_matches('/');
    text.lines()
        .filter_map(|l| {
            let (size, path) = l.trim().split_once(' ')?;
            let rel = path.strip_prefix(repo)?.trim_start_matches('/');
            let mut parts = rel.split('/');
            Some(ModelFile {
                path: path.to_string(),
                model: parts.next()?.to_string(),
                version: parts.next()?.to_string(),
                size: size.parse().ok()?,
            })
        })
        .collect()
}

/// Module names from `/proc/modules` (see [`crate::facts::modconf::loaded_modules`]).
pub fn proc_modules(text: &str) -> BTreeSet<String> {
    crate::facts::modconf::loaded_modules(text)
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_boot_prefers_mokutil_and_reads_the_efi_variable_byte() {
        assert_eq!(
            secure_boot(Some("SecureBoot enabled\n"), None),
            SecureBoot::Enabled
        );
        assert_eq!(
            secure_boot(None, Some("   6   0   0   0   1\n")),
            SecureBoot::Enabled
        );
        assert_eq!(
            secure_boot(None, Some("   6   0   0   0   0\n")),
            SecureBoot::Disabled
        );
        assert_eq!(secure_boot(None, Some("bios\n")), SecureBoot::NotUefi);
        assert_eq!(secure_boot(None, None), SecureBoot::Unknown);
    }

    #[test]
    fn kernels_sort_by_version_and_read_every_attribute() {
        let k = guest_kernels(
            "6.1.0-28-amd64 vmlinuz=yes headers=no nvidia=none signed=none\n6.1.0-21-amd64 vmlinuz=yes headers=yes nvidia=/lib/modules/6.1.0-21-amd64/updates/dkms/nvidia-current.ko signed=no\n",
        );
        assert_eq!(k[0].version, "6.1.0-21-amd64");
        assert!(k[0].headers);
        assert_eq!(k[0].module_signed, Some(false));
        assert_eq!(k[1].nvidia_module, None);
        assert!(!k[1].headers);
    }

    #[test]
    fn model_files_need_the_triton_layout() {
        let m = model_files(
            "/srv/models/",
            "1234 /srv/models/clip/1/model.onnx\n99 /elsewhere/x/1/model.onnx\n",
        );
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].model.as_str(), m[0].version.as_str()), ("clip", "1"));
    }

    #[test]
    fn tool_versions() {
        assert_eq!(
            tool_version(
                "NVIDIA Container Toolkit CLI version 1.14.3\ncommit: 53b24618a542025b108239fe602e66e912b7d6e2\n"
            ),
            Some("1.14.3".into())
        );
        assert_eq!(tool_version("podman version 4.3.1\n"), Some("4.3.1".into()));
        assert_eq!(tool_version("sh: 1: podman: not found\n"), None);
        assert_eq!(major_minor("4.3.1+ds1-8+deb12u1"), Some((4, 3)));
        assert_eq!(major_minor("1.18.0~rc.1"), Some((1, 18)));
        assert_eq!(major_minor("unknown"), None);
    }
}
