//! A transcript as people post it in forums and issues, turned into a facts file: prompt
//! lines (`root@pve:~# lspci -nnk`, `$ dmesg | grep ...`, `# cat /proc/cmdline`) followed by
//! output, markdown fences, group loops without a prompt. Each block is recognised by its
//! command where there is one and by the shape of its lines otherwise; what is recognised by
//! neither is listed as unread, never guessed. The result is the same text the probe prints,
//! so everything after it (parsers, verdicts, plans) is the code that reads live facts.

use super::fixed_regex;
use super::pci_tables;
use super::raw::MARKER;
use regex::Regex;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

/// What a transcript yielded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Paste {
    /// A facts file (format 1) holding every section the transcript supplied.
    #[serde(skip)]
    pub facts: String,
    /// Which lines went where: `lspci: lines 12-40`.
    pub read: Vec<String>,
    /// Runs of lines no reader took, with their first line.
    pub unread: Vec<Unread>,
    /// Where a later block replaced an earlier one of the same single-valued kind.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unread {
    pub first_line: usize,
    pub lines: usize,
    pub text: String,
}

/// The sections a paste can fill, and whether a second block adds to the first or replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Lspci,
    Groups,
    KernelLog,
    Cmdline,
    Uname,
    Modules,
    BootEvidence,
    BootVga,
    PveVersion,
    NvidiaSmi,
    Dkms,
    File,
}

impl Kind {
    fn section(self) -> &'static str {
        match self {
            Kind::Lspci => "lspci",
            Kind::Groups => "iommu-groups",
            Kind::KernelLog => "kernel-log",
            Kind::Cmdline => "proc-cmdline",
            Kind::Uname => "uname",
            Kind::Modules => "proc-modules",
            Kind::BootEvidence => "boot-evidence",
            Kind::BootVga => "boot-vga",
            Kind::PveVersion => "pveversion",
            Kind::NvidiaSmi => "nvidia-smi",
            Kind::Dkms => "dkms",
            Kind::File => "file",
        }
    }

    /// One value for the whole host: a later block is a later state and replaces it.
    fn single(self) -> bool {
        matches!(
            self,
            Kind::Cmdline | Kind::Uname | Kind::PveVersion | Kind::File
        )
    }
}

/// Commands whose `# cmd` prompt form is told apart from a comment by the command's name.
const COMMANDS: &[&str] = &[
    "lspci",
    "dmesg",
    "journalctl",
    "cat",
    "find",
    "for",
    "ls",
    "pvesh",
    "grep",
    "uname",
    "lsmod",
    "update-grub",
    "proxmox-boot-tool",
    "update-initramfs",
    "dkms",
    "nvidia-smi",
    "pveversion",
    "shopt",
    "sh",
    "bash",
    "./",
    "sudo",
    "egrep",
    "readlink",
    "qm",
    "pct",
];

static PROMPT: LazyLock<Regex> = LazyLock::new(|| {
    fixed_regex(
        r"^(?:\[?[\w.-]+@[\w.-]+(?::[^\s#$]*)?(?:\s+[^\s#$]+)?\]?\s?[#$]|~[#$]|[#$]|PS>|>)\s*(?P<cmd>\S.*)$",
    )
});
static LSPCI_HEAD: LazyLock<Regex> =
    LazyLock::new(|| fixed_regex(r"^(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7] \S"));
static GROUP_LINE: LazyLock<Regex> = LazyLock::new(|| {
    fixed_regex(
        r"iommu_groups/\d+/devices/|^IOMMU [Gg]roup \S+|^Group:?\s+\d+\s+(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:",
    )
});
static DMESG: LazyLock<Regex> = LazyLock::new(|| {
    fixed_regex(
        r"^\[\s*\d+\.\d+\]|^\[[A-Z][a-z]{2} [A-Z][a-z]{2} .*\d{4}\]|^[A-Z][a-z]{2}\s+\d+ \d\d:\d\d:\d\d \S+ kernel:|\bkernel: ",
    )
});
static BOOT_VGA: LazyLock<Regex> =
    LazyLock::new(|| fixed_regex(r"/sys/bus/pci/devices/[^/\s]+/boot_vga"));

/// One command and its output, or a run of output without a command.
struct Block {
    command: Option<String>,
    /// (1-based line number, text)
    lines: Vec<(usize, String)>,
}

pub fn read(text: &str) -> Paste {
    let mut sections: BTreeMap<(Kind, String), (Vec<String>, usize)> = BTreeMap::new();
    let mut read = Vec::new();
    let mut unread = Vec::new();
    let mut notes = Vec::new();
    let mut coverage = Coverage::default();
    for block in blocks(text) {
        let unfiltered = block
            .command
            .as_deref()
            .filter(|c| c.trim_start().starts_with("lspci"))
            .is_some_and(|c| coverage.command(c));
        if let Some(table) = table_of(&block) {
            // pvesh and lspci -vmm list every display device; pvesh's default filter drops bridges
            coverage.vga = true;
            let at = block.lines.first().map(|(n, _)| *n).unwrap_or_default();
            for l in &table.lspci {
                coverage.saw(l, at, false);
            }
            read.push(format!(
                "PCI table: lines {at}-{}",
                block.lines.last().map(|(n, _)| *n).unwrap_or(at)
            ));
            let lspci = sections
                .entry((Kind::Lspci, String::new()))
                .or_insert((Vec::new(), at));
            lspci.0.extend(table.lspci);
            let groups = sections
                .entry((Kind::Groups, String::new()))
                .or_insert((Vec::new(), at));
            groups.0.extend(table.groups);
            continue;
        }
        let routed = route(&block);
        let mut taken: Vec<bool> = vec![false; block.lines.len()];
        let mut by_kind: BTreeMap<(Kind, String), Vec<usize>> = BTreeMap::new();
        for (i, kind) in routed.iter().enumerate() {
            if let Some(k) = kind {
                by_kind.entry(k.clone()).or_default().push(i);
                taken[i] = true;
            }
        }
        let derived: Vec<(usize, String)> = by_kind
            .get(&(Kind::Groups, String::new()))
            .into_iter()
            .flatten()
            .flat_map(|&i| {
                lspci_of_group_line(&block.lines[i].1)
                    .into_iter()
                    .map(move |l| (i, l))
            })
            .collect();
        for (i, l) in &derived {
            coverage.saw(l, block.lines[*i].0, false);
        }
        for ((kind, arg), idx) in by_kind {
            let lines: Vec<String> = idx.iter().map(|&i| block.lines[i].1.clone()).collect();
            if kind == Kind::Lspci {
                for &i in &idx {
                    coverage.saw(&block.lines[i].1, block.lines[i].0, unfiltered);
                }
            }
            let first = block.lines[idx[0]].0;
            let last = block.lines[idx[idx.len() - 1]].0;
            read.push(format!(
                "{}{}: lines {first}-{last}",
                kind.section(),
                if arg.is_empty() {
                    String::new()
                } else {
                    format!(" {arg}")
                }
            ));
            let entry = sections
                .entry((kind, arg.clone()))
                .or_insert((Vec::new(), first));
            if kind.single() && !entry.0.is_empty() && entry.0 != lines {
                notes.push(format!(
                    "{}{} is given at line {} and again at line {first}: the later one is used, as a transcript runs forward in time",
                    kind.section(),
                    if arg.is_empty() { String::new() } else { format!(" {arg}") },
                    entry.1
                ));
                *entry = (lines, first);
            } else if !kind.single() || entry.0.is_empty() {
                entry.0.extend(lines);
            }
        }
        if let Some(&(i, _)) = derived.first() {
            let entry = sections
                .entry((Kind::Lspci, String::new()))
                .or_insert((Vec::new(), block.lines[i].0));
            entry.0.extend(derived.into_iter().map(|(_, l)| l));
        }
        unread.extend(unread_runs(&block, &taken));
    }
    let listing = coverage.listing(&mut notes);
    Paste {
        facts: render(&sections, listing),
        read,
        unread,
        notes,
    }
}

/// What the lspci blocks of a transcript cover. Only an unfiltered `lspci` lists every device,
/// and only while no other block shows a device it lacks: then the post was cut short. A grep
/// for VGA lists every VGA device; an excerpt or a group loop may list any part.
#[derive(Default)]
struct Coverage {
    unfiltered: bool,
    vga: bool,
    /// Addresses listed by unfiltered lspci blocks.
    listed: BTreeSet<String>,
    /// Addresses shown elsewhere, with the first transcript line showing each.
    elsewhere: BTreeMap<String, usize>,
}

impl Coverage {
    /// Notes an lspci command; true when it lists every device (no pipe, no -s or -d).
    fn command(&mut self, cmd: &str) -> bool {
        let stages: Vec<&str> = cmd.split('|').collect();
        // -s and -d select devices, also in a cluster of flags such as `-nnks 01:00.0`
        let filters = stages[0].split_whitespace().any(|w| {
            w.strip_prefix('-')
                .is_some_and(|flags| !flags.starts_with('-') && flags.contains(['s', 'd']))
        });
        self.vga |= stages.iter().skip(1).any(|stage| {
            let w: Vec<&str> = stage.split_whitespace().collect();
            w.first() == Some(&"grep")
                && w.iter()
                    .any(|x| x.trim_matches(['\'', '"']).eq_ignore_ascii_case("vga"))
        });
        let every = stages.len() == 1 && !filters;
        self.unfiltered |= every;
        every
    }

    /// An lspci-shaped line at transcript line `at`.
    fn saw(&mut self, line: &str, at: usize, unfiltered: bool) {
        let Some(address) = short_address(line) else {
            return;
        };
        if unfiltered {
            self.listed.insert(address);
        } else {
            self.elsewhere.entry(address).or_insert(at);
        }
    }

    /// The lspci section's marker (`""` every device, ` vga`, ` partial`).
    fn listing(&self, notes: &mut Vec<String>) -> &'static str {
        let cut = self
            .elsewhere
            .iter()
            .find(|(a, _)| self.unfiltered && !self.listed.contains(*a));
        if let Some((address, line)) = cut {
            notes.push(format!(
                "the full lspci listing lacks {address}, which line {line} shows: it was cut short, so it is not taken as every device of the host"
            ));
        }
        match (self.unfiltered && cut.is_none(), self.vga) {
            (true, _) => "",
            (false, true) => " vga",
            _ => " partial",
        }
    }
}

/// `02:00.0` from an lspci line that starts with `0000:02:00.0` or `02:00.0`.
fn short_address(line: &str) -> Option<String> {
    let first = line.split_whitespace().next()?;
    LSPCI_HEAD.is_match(line).then(|| {
        let a = first.to_ascii_lowercase();
        match a.len() {
            12 => a[5..].to_string(),
            _ => a,
        }
    })
}

/// `listing`: what the lspci section covers, as its marker says (`""` every device, ` vga`
/// every VGA device, ` partial` some).
fn render(sections: &BTreeMap<(Kind, String), (Vec<String>, usize)>, listing: &str) -> String {
    let mut out =
        format!("{MARKER}facts 1\n# read from a pasted transcript by `pvegpu discover --paste`\n");
    for ((kind, arg), (lines, _)) in sections {
        let head = match kind {
            Kind::File => format!("{MARKER}file {arg}"),
            Kind::Lspci => format!("{MARKER}lspci{listing}"),
            _ => format!("{MARKER}{}", kind.section()),
        };
        out.push_str(&head);
        out.push('\n');
        for l in lines {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// Strip what forum software adds around output: trailing CR, markdown bold, quote marks.
fn clean(line: &str) -> String {
    let line = line.trim_end_matches('\r');
    let line = line.strip_prefix("> ").unwrap_or(line);
    // a markdown heading that swallowed a prompt: `#### ~# lspci`
    let line = match line.trim_start_matches('#') {
        rest if line.starts_with("##") && rest.starts_with(' ') => rest.trim_start(),
        _ => line,
    };
    // a line posted as inline code: `41:00.0 VGA compatible controller: ...`
    let line = match line.strip_prefix('`').and_then(|l| l.strip_suffix('`')) {
        Some(inner) if !line.starts_with("``") && !inner.contains('`') => inner,
        _ => line,
    };
    line.replace("**", "")
}

fn command_of(line: &str) -> Option<String> {
    let c = PROMPT.captures(line)?;
    let cmd = c["cmd"].trim().to_string();
    let first = cmd.split_whitespace().next().unwrap_or("");
    let first = first.trim_start_matches("sudo ");
    let named = COMMANDS
        .iter()
        .any(|k| first == *k || (k.ends_with('/') && first.starts_with(k)));
    // `# comment` and `> quote` lines are prompts only when a known command follows
    let bare = line.starts_with('#') || line.starts_with('>') || line.starts_with('$');
    (named || !bare).then_some(cmd)
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    let mut current = Block {
        command: None,
        lines: Vec::new(),
    };
    for (i, raw) in text.lines().enumerate() {
        let line = clean(raw);
        if line.trim_start().starts_with("```") {
            let done = std::mem::replace(
                &mut current,
                Block {
                    command: None,
                    lines: Vec::new(),
                },
            );
            out.push(done);
            continue;
        }
        if let Some(cmd) = command_of(&line) {
            let done = std::mem::replace(
                &mut current,
                Block {
                    command: Some(cmd),
                    lines: Vec::new(),
                },
            );
            out.push(done);
            continue;
        }
        current.lines.push((i + 1, line));
    }
    out.push(current);
    out.retain(|b| b.command.is_some() || !b.lines.is_empty());
    out
}

/// Where each line of a block goes: by the block's command, else line by line by shape.
fn route(block: &Block) -> Vec<Option<(Kind, String)>> {
    if let Some(kind) = block.command.as_deref().and_then(kind_of_command) {
        return block
            .lines
            .iter()
            .map(|(_, l)| (!l.trim().is_empty()).then(|| kind.clone()))
            .collect();
    }
    let mut out = Vec::with_capacity(block.lines.len());
    let mut last: Option<(Kind, String)> = None;
    for (_, line) in &block.lines {
        let kind = kind_of_line(line).or_else(|| {
            // lspci's indented detail lines and a group header's members follow their head
            let continued = line.starts_with(char::is_whitespace) && !line.trim().is_empty();
            continued.then(|| last.clone()).flatten()
        });
        if kind.is_some() {
            last = kind.clone();
        }
        out.push(kind);
    }
    out
}

/// A pvesh hardware table (boxes or JSON) or `lspci -vmm` records, by command or by shape.
fn table_of(block: &Block) -> Option<pci_tables::Converted> {
    let lines: Vec<&str> = block.lines.iter().map(|(_, l)| l.as_str()).collect();
    let cmd = block.command.as_deref().unwrap_or("");
    let first = lines.iter().find(|l| !l.trim().is_empty())?.trim_start();
    let pvesh = cmd.starts_with("pvesh") && cmd.contains("hardware/pci");
    if (pvesh || first.starts_with('┌') || first.starts_with('│'))
        && lines.iter().any(|l| l.contains("iommugroup"))
    {
        return pci_tables::pvesh_table(&lines);
    }
    if first.starts_with('[') && lines.iter().any(|l| l.contains("\"iommugroup\"")) {
        return pci_tables::pvesh_json(&lines.join("\n"));
    }
    let vmm = cmd.starts_with("lspci")
        && cmd
            .split_whitespace()
            .any(|w| w.starts_with('-') && w.ends_with("mm"));
    if vmm || first.starts_with("Slot:") {
        return pci_tables::lspci_vmm(&lines);
    }
    None
}

/// The lspci line a group listing carries: `IOMMU Group 2 07:00.0 VGA ... [10de:1e89]`, an
/// indented member under an `IOMMU Group 2:` header, or `Group: 2 0000:07:00.0 ... Driver: X`.
fn lspci_of_group_line(line: &str) -> Vec<String> {
    let t = line.trim();
    let rest = if let Some(r) = t
        .strip_prefix("IOMMU Group ")
        .or_else(|| t.strip_prefix("IOMMU group "))
    {
        r.split_once(char::is_whitespace)
            .map(|(_, r)| r.trim())
            .unwrap_or("")
    } else if let Some(r) = t.strip_prefix("Group:") {
        r.trim_start()
            .split_once(char::is_whitespace)
            .map(|(_, r)| r.trim())
            .unwrap_or("")
    } else if line.starts_with(char::is_whitespace) {
        t
    } else {
        ""
    };
    if !LSPCI_HEAD.is_match(rest) {
        return Vec::new();
    }
    match rest.split_once("Driver:") {
        Some((head, driver)) => {
            let mut out = vec![head.trim_end().to_string()];
            if !driver.trim().is_empty() {
                out.push(format!("\tKernel driver in use: {}", driver.trim()));
            }
            out
        }
        None => vec![rest.to_string()],
    }
}

fn kind_of_line(line: &str) -> Option<(Kind, String)> {
    let t = line.trim();
    let k = if GROUP_LINE.is_match(t) {
        Kind::Groups
    } else if LSPCI_HEAD.is_match(line) {
        Kind::Lspci
    } else if DMESG.is_match(t) {
        Kind::KernelLog
    } else if t.starts_with("BOOT_IMAGE=") || t.starts_with("initrd=") {
        Kind::Cmdline
    } else if BOOT_VGA.is_match(t) {
        Kind::BootVga
    } else if t.starts_with("Generating grub configuration file")
        || t.contains("creating boot-entry")
        || t.contains("is configured with:")
    {
        Kind::BootEvidence
    } else {
        return None;
    };
    Some((k, String::new()))
}

fn kind_of_command(cmd: &str) -> Option<(Kind, String)> {
    let cmd = cmd.strip_prefix("sudo ").unwrap_or(cmd).trim();
    let first_stage = cmd.split('|').next().unwrap_or("").trim();
    let words: Vec<&str> = first_stage.split_whitespace().collect();
    let name = *words.first()?;
    let single = |k: Kind| Some((k, String::new()));
    match name {
        "lspci" => single(Kind::Lspci),
        "dmesg" | "journalctl" => single(Kind::KernelLog),
        "uname" if words.contains(&"-r") => single(Kind::Uname),
        "lsmod" => single(Kind::Modules),
        "update-grub" | "proxmox-boot-tool" | "update-initramfs" => single(Kind::BootEvidence),
        "pveversion" => single(Kind::PveVersion),
        "nvidia-smi" => single(Kind::NvidiaSmi),
        "dkms" => single(Kind::Dkms),
        "cat" | "more" | "less" if words.len() == 2 => {
            let path = words[1];
            match path {
                "/proc/cmdline" => single(Kind::Cmdline),
                "/proc/modules" => single(Kind::Modules),
                p if p == "/etc/default/grub"
                    || p == "/etc/kernel/cmdline"
                    || p == "/etc/modules"
                    || p.starts_with("/etc/modprobe.d/")
                    || p.starts_with("/etc/default/grub.d/")
                    || (p.starts_with("/etc/pve/lxc/") && p.ends_with(".conf")) =>
                {
                    Some((Kind::File, p.to_string()))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn unread_runs(block: &Block, taken: &[bool]) -> Vec<Unread> {
    let mut out: Vec<Unread> = Vec::new();
    let mut run: Option<Unread> = None;
    for ((n, line), used) in block.lines.iter().zip(taken) {
        let skip = *used || line.trim().is_empty();
        match (&mut run, skip) {
            (Some(r), false) => r.lines += 1,
            (None, false) => {
                run = Some(Unread {
                    first_line: *n,
                    lines: 1,
                    text: format!(
                        "{}{}",
                        block
                            .command
                            .as_deref()
                            .map(|c| format!("(after `{c}`) "))
                            .unwrap_or_default(),
                        line.trim()
                    ),
                })
            }
            (Some(_), true) => out.extend(run.take()),
            (None, true) => {}
        }
    }
    out.extend(run);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_fences_and_shapes() {
        let text = "Here is my setup:\n```\nroot@pve:~# cat /proc/cmdline\nBOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=/dev/mapper/pve-root ro quiet amd_iommu=on\nroot@pve:~# lspci -nnk | grep -A3 VGA\n0b:00.0 VGA compatible controller [0300]: NVIDIA Corporation GA102 [GeForce RTX 3090] [10de:2204] (rev a1)\n\tKernel driver in use: vfio-pci\n```\n\n```\nIOMMU Group 28 0b:00.0 VGA compatible controller [0300]: NVIDIA Corporation GA102 [10de:2204] (rev a1)\n[    0.532976] AMD-Vi: Interrupt remapping enabled\nsomething else entirely\n```\n";
        let p = read(text);
        assert!(
            p.facts.contains("### pvegpu proc-cmdline\nBOOT_IMAGE="),
            "{}",
            p.facts
        );
        assert!(
            p.facts.contains("### pvegpu lspci vga\n0b:00.0 VGA"),
            "{}",
            p.facts
        );
        assert!(p.facts.contains("\tKernel driver in use: vfio-pci"));
        assert!(p.facts.contains("### pvegpu iommu-groups\nIOMMU Group 28"));
        // the group loop's lspci line also names the device
        assert_eq!(
            p.facts.matches("0b:00.0 VGA compatible controller").count(),
            3
        );
        assert!(p.facts.contains("### pvegpu kernel-log\n[    0.532976]"));
        let unread: Vec<&str> = p.unread.iter().map(|u| u.text.as_str()).collect();
        assert_eq!(unread, vec!["Here is my setup:", "something else entirely"]);
    }

    #[test]
    fn a_pvesh_table_becomes_lspci_and_group_lines() {
        let text = "root@pve:~# pvesh get /nodes/pve/hardware/pci\n│ class    │ device │ id           │ iommugroup │ vendor │ device_name │ vendor_name │\n╞══════════╪════════╪══════════════╪════════════╪════════╪═════════════╪═════════════╡\n│ 0x030000 │ 0x2204 │ 0000:0b:00.0 │         28 │ 0x10de │ GA102       │ NVIDIA Corporation │\n";
        let p = read(text);
        assert!(
            p.facts
                .contains("### pvegpu lspci vga\n0000:0b:00.0 VGA compatible controller [0300]"),
            "{}",
            p.facts
        );
        assert!(
            p.facts
                .contains("### pvegpu iommu-groups\nIOMMU Group 28 0000:0b:00.0"),
            "{}",
            p.facts
        );
        assert!(p.unread.is_empty(), "{:?}", p.unread);
    }

    #[test]
    fn a_comment_is_not_a_prompt_but_a_known_command_is() {
        assert_eq!(command_of("# lspci -nnk"), Some("lspci -nnk".into()));
        assert_eq!(
            command_of("# If you change this file, run 'update-grub'"),
            None
        );
        assert_eq!(
            command_of("root@pve:~# dmesg | grep -e DMAR"),
            Some("dmesg | grep -e DMAR".into())
        );
        assert_eq!(command_of("[root@pve ~]# lspci"), Some("lspci".into()));
    }

    #[test]
    fn a_later_command_line_replaces_the_earlier_one() {
        let p = read(
            "# cat /proc/cmdline\nBOOT_IMAGE=a quiet\n# cat /proc/cmdline\nBOOT_IMAGE=a quiet intel_iommu=on\n",
        );
        assert!(p.facts.contains("intel_iommu=on") && !p.facts.contains("a quiet\n###"));
        assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
    }
}
