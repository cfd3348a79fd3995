#!/usr/bin/env python3
"""Build data/compat/support.json: which PCI device ids each NVIDIA driver branch lists, and
the subsystem names that tell apart products sharing a device id.

Usage:  python3 data/compat/build_support.py OPEN_GPU_KERNEL_MODULES_GIT PCIIDS_GIT SUPPORTED_GPUS_GIT

    OPEN_GPU_KERNEL_MODULES_GIT  a clone (or bare git dir) of github.com/NVIDIA/open-gpu-kernel-modules
                                 with its release tags
    PCIIDS_GIT                   a clone (or bare git dir) of github.com/pciutils/pciids
    SUPPORTED_GPUS_GIT           a clone of github.com/alex-tu-cc/get-nvidia-supported-gpus-json
                                 with its gh-pages branch (NVIDIA's supported-gpus.json, taken
                                 from Ubuntu's nvidia-driver-5xx packages)

Both are read with `git show REF:FILE`, so the result does not depend on a work tree. It also
reads the committed data/compat/gpus.json (the device ids pvegpu knows, and Debian's
nvidia-detect lists per id) and data/compat/drivers.json (the branch of each Debian package).
It takes a few seconds; the output is committed, so the repository builds without the clones.

What it writes (one record per line, `source` = indices into `sources`, as build.py does):

* `lists`: one record per (branch, list) with the ids the list has:
  - NVIDIA's open-gpu-kernel-modules README, table "Compatible GPUs", at the newest release
    tag of each branch (515..595). The README says the open modules "can be used on any Turing
    or later GPU (see the table below)", so this list speaks for Turing and later only
    (`covers_from: "Turing"`), and for the open kernel module only (`scope: "open_module"`):
    it is not the driver's whole list. Tesla T4 (10de:1eb8) is missing from it at 535.288.01
    and 550.163.01 although Debian's nvidia-detect lists it for those drivers; it appears from
    565. So a card it lists is supported by that release; a card it lacks may still be
    supported by the proprietary module.
  - Debian's nvidia-detect id list of each driver package (bookworm: nvidia-detect
    535.309.01 data; trixie: 550.163.01 data), as carried per id in gpus.json `debian`. Debian
    generates these from the driver it packages; they speak for every architecture and for the
    whole driver (`scope: "driver"`): a card they lack is not supported by that package.
  - NVIDIA's own supported-gpus.json (the data of the driver README's "Appendix A. Supported
    NVIDIA GPU Products") of the 510, 515 and 525 drivers, as a script copied it out of
    Ubuntu's nvidia-driver-5xx packages (bionic, focal) in 2023; only entries without a
    `legacybranch` (those need an older legacy driver). It speaks for every architecture but
    not for every product (`scope: "products"`): it lacks Tesla T4 (10de:1eb8), which those
    drivers support (Debian lists it for 535, NVIDIA's open-module table from 565). So a card
    it lists is supported; a card it lacks is not thereby refused.
  `release` is the driver release the list was read from (null where the data does not say).
* `subsystems`: for each device id in gpus.json, its subsystem entries from pci.ids (at the
  snapshot gpus.json was built from) and the subsystem-qualified rows of NVIDIA's README tables
  (`1E30 10DE 129E` = device 1E30, subsystem 10de:129e), each with the name its source gives.
"""

import json
import pathlib
import re
import subprocess
import sys

sys.dont_write_bytecode = True  # importing build.py must leave no __pycache__ in the tree
from build import Sources, write  # noqa: E402  # the same citation numbering and one-record-per-line layout

HERE = pathlib.Path(__file__).resolve().parent

# The newest release tag of each branch in github.com/NVIDIA/open-gpu-kernel-modules (tags
# 515.43.04 .. 595.45.04 in the snapshot read on 2026-12-03). The newest release lists the
# most ids: NVIDIA adds new products to a branch in its point releases.
OPEN_TAGS = [
    "515.105.01",
    "520.61.07",
    "525.147.05",
    "530.41.03",
    "535.288.01",
    "545.29.06",
    "550.163.01",
    "555.58.02",
    "560.35.03",
    "565.77",
    "570.211.01",
    "575.64.05",
    "580.142",
    "590.48.01",
    "595.45.04",
]

# The pci.ids snapshot gpus.json names (its first source).
PCIIDS_COMMIT = "c1c12547d626ebf05fd0223144ad87fab5e95d06"

# NVIDIA's supported-gpus.json per branch, from github.com/alex-tu-cc/get-nvidia-supported-gpus-json
# (gh-pages): the file its script extracted from Ubuntu's package of that branch.
SUPPORTED_GPUS = {
    510: "bionic-nvidia-driver-510-supported-gpus.json",
    515: "bionic-nvidia-driver-515-supported-gpus.json",
    525: "focal-nvidia-driver-525-supported-gpus.json",
}
SUPPORTED_GPUS_REF = "gh-pages"

# gpus.json `debian`: codename -> the nvidia-detect package its lists come from.
DEBIAN_DETECT = {
    "bookworm": "Debian bookworm-security package nvidia-detect=535.309.01-0+deb12u1 (usr/share/nvidia/*.ids)",
    "trixie": "Debian trixie package nvidia-detect=550.163.01-2 (usr/share/nvidia/*.ids)",
}
# The driver release a Debian list was written for, where the data says it: nvidia-detect is
# built from the same source package as `nvidia-driver`, so its own list is of that release.
DEBIAN_RELEASE = {
    ("bookworm", "nvidia-driver"): "535.309.01",
    ("trixie", "nvidia-driver"): "550.163.01",
}

ROW = re.compile(r"^\|\s*(?P<name>.+?)\s*\|\s*(?P<dev>[0-9A-F]{4})(?: (?P<sv>[0-9A-F]{4}) (?P<sd>[0-9A-F]{4}))?\s*\|\s*$")


def git_show(repo, ref, path):
    return subprocess.run(
        ["git", "--git-dir", str(repo), "show", f"{ref}:{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def git_commit(repo, ref):
    out = subprocess.run(
        ["git", "--git-dir", str(repo), "log", "-1", "--format=%H %cs", f"{ref}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return out[0], out[1]


def git_dir(path):
    p = pathlib.Path(path)
    return p / ".git" if (p / ".git").exists() else p


def readme_table(text):
    """(quote, rows): the first sentence of "## Compatible GPUs", and (name, dev, subsys)."""
    section = text.split("## Compatible GPUs", 1)[1]
    first_para = section.strip().split("\n\n", 1)[0]
    quote = " ".join(first_para.split())
    quote = quote.split(". ", 1)[0].rstrip(".") + "."
    rows = []
    for line in section.splitlines():
        m = ROW.match(line)
        if not m:
            continue
        sub = f"{m['sv'].lower()}:{m['sd'].lower()}" if m["sv"] else None
        rows.append((m["name"], f"10de:{m['dev'].lower()}", sub))
    return quote, rows


def pciids_subsystems(text, known):
    """device id -> [(subsystem, name)] for NVIDIA devices in `known`."""
    out = {}
    in_nvidia = False
    device = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if not line.startswith("\t"):
            in_nvidia = line.startswith("10de ")
            device = None
            continue
        if not in_nvidia:
            continue
        if line.startswith("\t\t"):
            if device in known:
                sv, sd, name = line.strip().split(None, 2)
                out.setdefault(device, []).append((f"{sv}:{sd}", name))
        else:
            device = "10de:" + line.strip().split(None, 1)[0]
    return out


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.split("\n\n")[1])
    open_repo, pciids_repo, supported_repo = (git_dir(a) for a in sys.argv[1:4])
    gpus = json.loads((HERE / "gpus.json").read_text())
    drivers = json.loads((HERE / "drivers.json").read_text())
    known = {g["id"] for g in gpus["devices"]}
    s = Sources()
    lists = []
    subsystems = {}

    for tag in OPEN_TAGS:
        commit, date = git_commit(open_repo, tag)
        quote, rows = readme_table(git_show(open_repo, tag, "README.md"))
        cite = (
            f"github:NVIDIA/open-gpu-kernel-modules:README.md@{commit} (tag {tag}, {date}), "
            f'table "Compatible GPUs": "{quote}"'
        )
        ids = sorted({dev for _, dev, _ in rows})
        lists.append(
            {
                "branch": int(tag.split(".")[0]),
                "release": tag,
                "list": "open-gpu-kernel-modules README, Compatible GPUs",
                "covers_from": "Turing",
                "scope": "open_module",
                "ids": ids,
                "source": s.refs([cite]),
            }
        )
        for name, dev, sub in rows:
            if sub and dev in known:
                # The newest release that names the row is its source (tags go oldest first).
                subsystems[(dev, sub, name)] = cite

    commit, date = git_commit(supported_repo, SUPPORTED_GPUS_REF)
    for branch, path in SUPPORTED_GPUS.items():
        chips = json.loads(git_show(supported_repo, commit, path))["chips"]
        ids = sorted({f"10de:{c['devid'][2:].lower()}" for c in chips if "legacybranch" not in c})
        cite = (
            f"github:alex-tu-cc/get-nvidia-supported-gpus-json:{path}@{commit} ({date}): "
            f"NVIDIA supported-gpus.json extracted from Ubuntu's nvidia-driver-{branch} package "
            "(the driver release is not recorded)"
        )
        lists.append(
            {
                "branch": branch,
                "release": None,
                "list": f"NVIDIA supported-gpus.json (Ubuntu nvidia-driver-{branch})",
                "covers_from": None,
                "scope": "products",
                "ids": ids,
                "source": s.refs([cite]),
            }
        )

    pkg_branch = {
        (p["codename"], p["package"].split()[0]): p["branch"]
        for p in drivers["distro_packages"]
        if p["distro"] == "debian" and p["branch"] is not None
    }
    debian = {}
    for g in gpus["devices"]:
        for codename, packages in g["debian"].items():
            for p in packages:
                debian.setdefault((codename, p), []).append(g["id"])
    for (codename, package), ids in sorted(debian.items()):
        branch = pkg_branch.get((codename, package))
        if branch is None:
            sys.exit(f"error: drivers.json has no branch for Debian {codename} package {package}")
        lists.append(
            {
                "branch": branch,
                "release": DEBIAN_RELEASE.get((codename, package)),
                "list": f"Debian {codename} nvidia-detect, package {package}",
                "covers_from": None,
                "scope": "driver",
                "ids": sorted(ids),
                "source": s.refs([DEBIAN_DETECT[codename]]),
            }
        )
    lists.sort(key=lambda r: (r["branch"], r["list"]))

    commit, date = git_commit(pciids_repo, PCIIDS_COMMIT)
    cite = f"github:pciutils/pciids:pci.ids@{commit} (snapshot {date}), subsystem lines under vendor 10de"
    for dev, entries in pciids_subsystems(git_show(pciids_repo, PCIIDS_COMMIT, "pci.ids"), known).items():
        for sub, name in entries:
            subsystems[(dev, sub, name)] = cite
    subs = [
        {"id": dev, "subsystem": sub, "name": name, "source": s.refs([cite])}
        for (dev, sub, name), cite in sorted(subsystems.items())
    ]

    write(HERE / "support.json", "pvegpu-compat/support/1", "data/compat/build_support.py", s, {"lists": lists, "subsystems": subs})
    print(f"data/compat/support.json: lists: {len(lists)}, subsystems: {len(subs)}, {len(s.items)} sources")


if __name__ == "__main__":
    main()
