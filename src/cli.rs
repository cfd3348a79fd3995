//! Command-line interface (clap types only).
// The doc comments here are clap's help text, which names inventory tables such as `[vm]`
// as the user writes them; they are not rustdoc links.
#![allow(rustdoc::broken_intra_doc_links)]

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "pvegpu", version = env!("PVEGPU_VERSION"), about = "Prepare Proxmox VE nodes for NVIDIA GPU passthrough: plan, apply, verify", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: GlobalArgs,
}

pub const DEFAULT_INVENTORY: &str = "pvegpu.toml";

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The inventory of nodes (TOML)
    #[arg(
        long,
        short = 'i',
        global = true,
        env = "PVEGPU_INVENTORY",
        default_value = DEFAULT_INVENTORY,
        help_heading = "Global options"
    )]
    pub inventory: PathBuf,
    /// More log output on stderr (-v, -vv)
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count, help_heading = "Global options")]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(
        long,
        short = 'q',
        global = true,
        conflicts_with = "verbose",
        help_heading = "Global options"
    )]
    pub quiet: bool,
    /// When to use colour
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, help_heading = "Global options")]
    pub color: ColorChoice,
    /// Machine-readable JSON on stdout
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// How many nodes discover, plan and verify work on at once unless `--parallelism` says:
/// OpenSSH's server drops unauthenticated connections beyond 10 by default (`MaxStartups
/// 10:30:100`), which a fleet reached through one jump host would hit.
pub const DEFAULT_PARALLELISM: u16 = 10;

/// `--limit`: the nodes a command acts on.
#[derive(Debug, clap::Args)]
pub struct Limit {
    /// Which nodes: names, groups, globs, `all`, `!name` to leave one out, `&group` to keep
    /// only members (`osm45,pve-*,!pve-3`); every node of the inventory when left out
    #[arg(
        long = "limit",
        short = 'l',
        visible_alias = "node",
        short_alias = 'n',
        value_name = "PATTERN"
    )]
    pub pattern: Option<String>,
}

/// The nodes a read-only command works on, and how many at once.
#[derive(Debug, clap::Args)]
pub struct Nodes {
    #[command(flatten)]
    pub limit: Limit,
    /// How many nodes to work on at once
    #[arg(long, default_value_t = DEFAULT_PARALLELISM, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub parallelism: u16,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show every PCI device of a node with its IOMMU group and driver, and whether each GPU can be passed through (changes nothing)
    #[command(after_help = "Examples:
  pvegpu -i pvegpu.toml discover --limit osm45
  pvegpu -i pvegpu.toml discover --limit osm45 --save osm45.facts
  pvegpu discover --paste forum-post.txt --json")]
    Discover {
        #[command(flatten)]
        nodes: Nodes,
        /// Save the raw probe output (or what --paste read) to this file, for `plan --facts` anywhere
        #[arg(long, value_name = "FILE")]
        save: Option<PathBuf>,
        /// Judge a facts file saved by `discover --save` (or assembled by hand) instead of SSH
        #[arg(long, value_name = "FILE", conflicts_with = "paste")]
        facts: Option<PathBuf>,
        /// Judge a transcript as posted in forums and issues (`root@pve:~# lspci -nnk` and its output, dmesg excerpts, group loops...); `-` reads stdin. What it cannot read is listed, never guessed
        #[arg(long, value_name = "FILE")]
        paste: Option<PathBuf>,
    },
    /// Show every change passthrough needs, with diffs and reasons (changes nothing)
    #[command(after_help = "Examples:
  pvegpu -i pvegpu.toml plan --limit osm45
  pvegpu -i pvegpu.toml plan --limit 'gpu_nodes,!osm45' --parallelism 20
  pvegpu -i pvegpu.toml plan --detailed-exitcode    # 0 nothing to do, 2 changes, 1 error
  pvegpu -i pvegpu.toml plan --facts osm45.facts --phase host")]
    Plan {
        #[command(flatten)]
        nodes: Nodes,
        /// Take the host's facts from a file saved by `discover --save` (or assembled by hand) instead of SSH; repeat it for several nodes (planned concurrently, each file names its node); the VM phase, where the node has a [vm] table, still asks the Proxmox API
        #[arg(long, value_name = "FILE")]
        facts: Vec<PathBuf>,
        /// Take the host's facts from a transcript as posted (`-` for stdin); it must hold at least `uname -r`, `/proc/cmdline` and lspci
        #[arg(long, value_name = "FILE", conflicts_with = "facts")]
        paste: Option<PathBuf>,
        /// Plan up to this phase: `host`, `vm` or `guest` (each is planned from the one before
        /// it). Left out, every phase the node has, and one that cannot be reached (an offline
        /// plan's VM phase without the API) fails the run
        #[arg(long, value_enum, value_name = "PHASE")]
        phase: Option<PhaseArg>,
        /// Exit 0 when there is nothing to change, 2 when there is, 1 on error
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Make the changes the plan shows, reboot if needed, and verify (`--serial` nodes at a time, one by default)
    #[command(after_help = "Examples:
  pvegpu -i pvegpu.toml apply --limit osm45
  pvegpu -i pvegpu.toml apply --limit osm45 --yes --stop-guests
  pvegpu -i pvegpu.toml apply --limit 'pve-*' --serial 2 --keep-going --yes
  pvegpu -i pvegpu.toml apply --limit osm45 --facts osm45.facts --yes   # the VM phase only")]
    Apply {
        #[command(flatten)]
        limit: Limit,
        /// How many nodes to change at once (the next batch starts when this one is done, and
        /// each node's reboot interlocks are read just before its turn)
        #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        serial: u16,
        /// Go on with the remaining nodes after one is refused or fails (the recap lists each)
        #[arg(long)]
        keep_going: bool,
        /// Do not ask before changing anything (required when stdin is not a terminal)
        #[arg(long, short = 'y')]
        yes: bool,
        /// Shut running guests down cleanly through Proxmox before a reboot (otherwise refuse)
        #[arg(long)]
        stop_guests: bool,
        /// How long to wait for a node to come back from a reboot, in seconds
        #[arg(long, default_value_t = 900, value_name = "SECONDS")]
        reboot_timeout: u64,
        /// Take the host's facts from a file saved by `discover --save` instead of SSH: only the
        /// VM phase runs, and only when those facts show a converged host
        #[arg(long, value_name = "FILE", requires = "pattern")]
        facts: Option<PathBuf>,
    },
    /// Put back what pvegpu changed on a node's host configuration, and refresh initramfs and boot loader
    Rollback {
        /// The node to put back
        #[arg(long, short = 'n')]
        node: String,
        /// Do not ask before changing anything
        #[arg(long, short = 'y')]
        yes: bool,
        /// Reboot into the previous configuration afterwards
        #[arg(long)]
        reboot: bool,
        /// Shut running guests down cleanly through Proxmox before the reboot
        #[arg(long)]
        stop_guests: bool,
        /// How long to wait for the node to come back from the reboot, in seconds
        #[arg(long, default_value_t = 900, value_name = "SECONDS")]
        reboot_timeout: u64,
    },
    /// Read the node's API certificate fingerprint over SSH, for `fingerprint =` under [api]
    Fingerprint {
        /// The node whose certificate to read (over SSH, as in the inventory)
        #[arg(long, short = 'n')]
        node: String,
    },
    /// Prove the chain host, VM, guest, container runtime, Triton works, layer by layer, read-only; exit 0 only when every check passes
    #[command(after_help = "Examples:
  pvegpu -i pvegpu.toml verify --limit osm45
  pvegpu -i pvegpu.toml verify --vm 201 --json
  pvegpu -i pvegpu.toml verify --prometheus /var/lib/prometheus/node-exporter/pvegpu.prom
  pvegpu -i pvegpu.toml verify --limit osm45 --facts osm45.facts --ascii")]
    Verify {
        #[command(flatten)]
        nodes: Nodes,
        /// Only the node whose [vm] has this id
        #[arg(long, value_name = "ID")]
        vm: Option<u32>,
        /// Check the host layer on a facts file saved by `discover --save` instead of over SSH
        #[arg(long, value_name = "FILE", requires = "pattern")]
        facts: Option<PathBuf>,
        /// Plain ASCII marks instead of ✓ ✗ (for logs that mangle unicode)
        #[arg(long)]
        ascii: bool,
        /// Also write the checks as JUnit XML (one test case per check), for CI
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Also write the checks in node_exporter's textfile format (written atomically: point
        /// it into the textfile collector's folder)
        #[arg(long, value_name = "FILE")]
        prometheus: Option<PathBuf>,
    },
    /// Which driver, CUDA and Triton release fit a set of GPUs, and why (offline, from the built-in tables)
    #[command(after_help = "Examples:
  pvegpu compat 10de:1b80 --distro debian-12
  pvegpu compat 10de:1b80 10de:1e04 --driver 535.261.03 --backend onnx
  pvegpu compat \"GeForce GTX 1080\" --json
  pvegpu compat 10de:1b80 --release 23.05
  pvegpu compat --model model.onnx
  pvegpu compat --facts osm45.facts --model model.onnx
  pvegpu compat --node osm45
  pvegpu compat 10de:1e30/10de:129e    # device/subsystem, as `lspci -nnv` prints them")]
    Compat(CompatArgs),
    /// Check files offline for GPU routing mistakes
    Lint {
        /// What to check
        #[command(subcommand)]
        what: LintWhat,
    },
    /// Write the man pages (pvegpu.1 and one per subcommand) into a folder, for packaging
    #[command(hide = true)]
    Man {
        /// The folder to write them into (created if missing)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Print shell completions
    Completions {
        /// The shell to print completions for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `pvegpu compat`'s arguments.
#[derive(Debug, Args)]
pub struct CompatArgs {
    /// GPUs: PCI ids as `lspci -nn` prints them (`10de:1b80`), a device id with the subsystem
    /// id of lspci -nnv's `Subsystem:` line (`10de:1e30/10de:129e`: one device id can be sold
    /// as several products), names (`"GeForce GTX 1080"`, `"Quadro RTX 8000"`), or `id=name`;
    /// repeat for each card. A name that covers cards which differ is an error listing them.
    /// Optional with `--facts`, `--node` or `--model`
    #[arg(num_args = 0.., value_name = "GPU", required_unless_present_any = ["facts", "node", "models"])]
    pub gpus: Vec<String>,
    /// The guest distribution [default: the guest's own with a guest's `--facts`, the node's
    /// `[vm.guest] distro` with `--node`, else debian-12]
    #[arg(long, value_parser = ["debian-12", "debian-13", "ubuntu-22.04", "ubuntu-24.04", "ubuntu-26.04"])]
    pub distro: Option<String>,
    /// The driver installed in the guest, as `nvidia-smi` prints it (`535.261.03`) or a branch
    /// (`535`) [default: what nvidia-smi reports in a guest's `--facts`]
    #[arg(long)]
    pub driver: Option<String>,
    /// Backends served (default: all)
    #[arg(long = "backend", value_delimiter = ',', value_parser = ["onnx", "tensorrt", "python"])]
    pub backends: Vec<String>,
    /// An ONNX model: which Triton releases load it (its IR version and opset against each
    /// release's ONNX Runtime), and with GPUs which of those fit them; repeat for each model
    #[arg(long = "model", value_name = "FILE.onnx")]
    pub models: Vec<PathBuf>,
    /// A Triton release to judge for these GPUs and driver (`23.05`): fits or not, and why
    #[arg(long, value_name = "YY.MM")]
    pub release: Option<String>,
    /// Take the GPUs from a facts file: a node's (`pvegpu discover --save`) or a guest's probe
    /// output (then also its distribution and driver)
    #[arg(long, value_name = "FILE", conflicts_with = "node")]
    pub facts: Option<PathBuf>,
    /// Take the GPUs from a node of the inventory, read live over SSH (read-only)
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
}

/// `--phase`: the last phase a command goes through.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PhaseArg {
    Host,
    Vm,
    Guest,
}

impl From<PhaseArg> for crate::pipeline::Through {
    fn from(p: PhaseArg) -> Self {
        match p {
            PhaseArg::Host => Self::Host,
            PhaseArg::Vm => Self::Vm,
            PhaseArg::Guest => Self::Guest,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum LintWhat {
    /// A Docker Compose file: count with device_ids, CUDA_VISIBLE_DEVICES and NVIDIA_VISIBLE_DEVICES against the reservation, tensor parallelism larger than the GPUs a service sees
    Compose {
        /// The compose file
        file: PathBuf,
    },
}
