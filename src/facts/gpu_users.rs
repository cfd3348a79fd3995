//! Who uses a host's NVIDIA GPUs through the host's own driver: processes in `nvidia-smi`'s
//! table, and LXC containers whose config passes `/dev/nvidia*` (or the nvidia major, 195).
//! Binding such a GPU to vfio-pci takes it from them.

use super::fixed_regex;
use super::nvidia_smi::smi_bus_address;
use crate::pci::PciAddress;
use regex::Regex;
use serde::Serialize;
use std::sync::LazyLock;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GpuUsers {
    /// GPU index → address, from nvidia-smi's table.
    pub gpus: Vec<(u32, PciAddress)>,
    /// (GPU index, "PID name") for each process row.
    pub processes: Vec<(u32, String)>,
    /// Containers whose config passes NVIDIA device nodes: (id, the config line).
    pub containers: Vec<(String, String)>,
    /// nvidia-smi's table was read: a GPU it lists without processes has none.
    pub smi_read: bool,
}

impl GpuUsers {
    /// What holds the GPU at `address`: its processes, and every container that passes
    /// NVIDIA device nodes (a container's /dev/nvidiactl reaches every GPU of the driver).
    pub fn of(&self, address: &PciAddress) -> Vec<String> {
        let index = self
            .gpus
            .iter()
            .find(|(_, a)| a == address)
            .map(|(i, _)| *i);
        let mut out: Vec<String> = self
            .processes
            .iter()
            .filter(|(i, _)| Some(*i) == index)
            .map(|(_, p)| format!("process {p}"))
            .collect();
        let mut ids: Vec<&str> = self.containers.iter().map(|(id, _)| id.as_str()).collect();
        ids.dedup();
        out.extend(ids.into_iter().map(|id| format!("LXC container {id}")));
        out
    }
}

static GPU_ROW: LazyLock<Regex> = LazyLock::new(|| {
    fixed_regex(r"^\|\s+(\d+)\s+.*\|\s+([0-9A-Fa-f]{8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])\s")
});
/// `|    0   N/A  N/A     12345      C   ffmpeg    200MiB |`; drivers before 450 print no GI/CI.
static PROCESS_ROW: LazyLock<Regex> = LazyLock::new(|| {
    fixed_regex(r"^\|\s+(\d+)\s+(?:(?:N/A|\d+)\s+(?:N/A|\d+)\s+)?(\d+)\s+[CGM+]+\s+(\S+)")
});

/// `nvidia-smi` as it prints by default.
pub fn parse_smi_table(text: &str) -> GpuUsers {
    let mut users = GpuUsers {
        smi_read: true,
        ..GpuUsers::default()
    };
    let mut in_processes = false;
    for line in text.lines() {
        if line.contains("Processes:") {
            in_processes = true;
            continue;
        }
        if in_processes {
            if let Some(c) = PROCESS_ROW.captures(line)
                && let Ok(i) = c[1].parse()
            {
                users.processes.push((i, format!("{} {}", &c[2], &c[3])));
            }
        } else if let Some(c) = GPU_ROW.captures(line)
            && let (Ok(i), Some(a)) = (c[1].parse(), smi_bus_address(&c[2]))
        {
            users.gpus.push((i, a));
        }
    }
    users
}

/// The lines of one container config that pass NVIDIA device nodes.
pub fn lxc_nvidia_lines(config: &str) -> Vec<String> {
    config
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.contains("dev/nvidia") || l.contains("c 195:"))
        .map(str::to_string)
        .collect()
}

/// The container id of `/etc/pve/lxc/102.conf`.
pub fn lxc_id(path: &str) -> Option<String> {
    path.strip_prefix("/etc/pve/lxc/")?
        .strip_suffix(".conf")
        .map(str::to_string)
}

/// `grep -H -E 'nvidia|c 195:' /etc/pve/lxc/*.conf`: `path:line` each.
pub fn parse_lxc_grep(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let (path, line) = l.split_once(".conf:")?;
            let id = lxc_id(&format!("{path}.conf"))?;
            lxc_nvidia_lines(line).pop().map(|line| (id, line))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_and_containers() {
        let smi = "|   0  Quadro P2000                   Off | 00000000:05:00.0 Off |                  N/A |\n|   1  NVIDIA GeForce RTX 4060        Off | 00000000:82:00.0 Off |                  N/A |\n| Processes:                                                                            |\n|  GPU   GI   CI        PID   Type   Process name                            GPU Memory |\n|    1   N/A  N/A      4242      C   ffmpeg                                      200MiB |\n";
        let mut u = parse_smi_table(smi);
        assert_eq!(u.gpus.len(), 2);
        assert_eq!(
            u.of(&"0000:82:00.0".parse().unwrap()),
            vec!["process 4242 ffmpeg"]
        );
        assert!(u.of(&"0000:05:00.0".parse().unwrap()).is_empty());
        u.containers = parse_lxc_grep(
            "/etc/pve/lxc/2051.conf:lxc.cgroup2.devices.allow: c 195:0 rwm\n/etc/pve/lxc/2051.conf:lxc.mount.entry: /dev/nvidia0 dev/nvidia0 none bind,optional,create=file\n/etc/pve/lxc/300.conf:hostname: web\n",
        );
        assert_eq!(u.containers.len(), 2);
        assert_eq!(
            u.of(&"0000:05:00.0".parse().unwrap()),
            vec!["LXC container 2051"]
        );
    }
}
