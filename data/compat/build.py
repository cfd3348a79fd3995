#!/usr/bin/env python3
"""Build pvegpu's compatibility tables (data/compat/*.json) from the shared knowledge base.

Usage:  python3 data/compat/build.py [SOURCE_DIR]
        SOURCE_DIR defaults to ../shared/compat beside the repository.

The output is committed, so the repository builds without SOURCE_DIR; `cargo test --test
compat` checks the committed tables against SOURCE_DIR whenever it exists.

On top of SOURCE_DIR, two project-owned files beside this script are applied:

* `corrections.json`: records corrected or added from primary sources, each with its
  source, a verbatim quote and the day it was checked (its `snapshot` date is written into
  every output header: the day the tables were last checked against their sources);
* `rules.json`: the rules behind inferred values; a compute capability inferred from a chip
  codename that no `chip-cc` chip covers is set to null (unknown), never kept as a guess.

`data/compat/README.md` is the refresh procedure.

Format (one file per domain, JSON, one record per line so diffs stay readable):

    {"schema": "pvegpu-compat/<domain>/1", "from": "<file> generated <date>",
     "snapshot": "<YYYY-MM-DD>", "sources": ["<citation>", ...],
     "<table>": [
       {... "inferred": [...], "source": [3, 7]},
       ...
     ]}

* `source` holds indices into the file's `sources` list (the citations are long and shared by
  hundreds of records; indices keep the table small). Every record keeps all of its
  citations, in the original order.
* `inferred` is the source record's list of derived fields or statements (`[]` = everything
  was read from the cited sources; a record without the key in the source gets `[]`).
* Only the fields pvegpu uses are kept; values are copied verbatim (strings stay strings,
  null stays null: a missing compute capability is never filled in). Renamed keys:
  gpus: pci_id->id, architecture->arch, compute_capability->cc,
        compute_capability_nvidia_list->cc_nvidia_list, nvidia_legacy_branch->legacy_branch,
        open_kernel_module_supported->open_module, brand_class->brand,
        debian.open_kernel_module_listed->debian_open_listed, debian.<codename>->debian.<codename>
  drivers: architecture_support->architectures, branch (string) -> branch (number),
        distro_packages[].branch (string|null) -> number|null
  cuda: min_driver_linux->min_driver, driver_branch->branch (number), sm_targets->sm;
        forward_compat (only from corrections.json): package (cuda-compat-<major>-<minor>),
        drivers (the branches NVIDIA's forward-compatibility table marks C, as "535")
  triton: cuda_version->cuda, cc_min_documented->cc_min, onnxruntime_version->ort,
        onnxruntime_min_cc->ort_min_cc, onnxruntime_max_ir_version->ort_max_ir,
        onnxruntime_max_opset->ort_max_opset, tensorrt_version->trt, tensorrt_series->trt_series,
        tensorrt_min_cc->trt_min_cc, datacenter_compat_drivers->dc_compat_drivers,
        minor_version_compat_floor->mvc_floor
  onnx: onnxruntime[] -> ort[] (onnxruntime->version), onnx_python_releases[] -> onnx[]
        (onnx->version, ir_version->ir)
"""

import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent


class Sources:
    """Citation strings, numbered in first-seen order."""

    def __init__(self):
        self.items = []
        self.index = {}

    def refs(self, cites):
        out = []
        for c in cites:
            if c not in self.index:
                self.index[c] = len(self.items)
                self.items.append(c)
            out.append(self.index[c])
        return out


def branch_num(s):
    return None if s is None else int(s)


def write(path, schema, origin, snapshot, sources, tables):
    """One record per line; the header and table names pretty-printed."""
    lines = ["{", f'  "schema": {json.dumps(schema)},', f'  "from": {json.dumps(origin)},']
    lines.append(f'  "snapshot": {json.dumps(snapshot)},')
    lines.append('  "sources": [')
    lines.append(",\n".join("    " + json.dumps(s, ensure_ascii=False) for s in sources.items))
    lines.append("  ],")
    names = list(tables)
    for i, name in enumerate(names):
        value = tables[name]
        lines.append(f"  {json.dumps(name)}: " + ("[" if isinstance(value, list) else "{"))
        if isinstance(value, list):
            body = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in value]
        else:
            body = [
                f"{json.dumps(k)}:" + json.dumps(v, ensure_ascii=False, separators=(",", ":"))
                for k, v in value.items()
            ]
        lines.append(",\n".join("    " + b for b in body))
        close = "]" if isinstance(value, list) else "}"
        lines.append("  " + close + ("," if i + 1 < len(names) else ""))
    lines.append("}")
    text = "\n".join(lines) + "\n"
    json.loads(text)  # the writer must produce valid JSON
    path.write_text(text, encoding="utf-8")


def gpus(src):
    d = json.loads((src / "gpus.json").read_text())
    s = Sources()
    devices = []
    for g in d["devices"]:
        deb = g["debian"]
        rec = {
            "id": g["pci_id"],
            "name": g["name"],
            "pci_ids_name": g["pci_ids_name"],
            "chip": g["chip"],
            "arch": g["architecture"],
            "cc": g["compute_capability"],
            "cc_basis": g["cc_basis"],
        }
        if "compute_capability_nvidia_list" in g:
            rec["cc_nvidia_list"] = g["compute_capability_nvidia_list"]
        rec.update(
            {
                "legacy_branch": g["nvidia_legacy_branch"],
                "open_module": g["open_kernel_module_supported"],
                "brand": g["brand_class"],
                "debian": {k: v for k, v in deb.items() if k != "open_kernel_module_listed"},
                "debian_open_listed": deb["open_kernel_module_listed"],
                "inferred": g["inferred"],
                "source": s.refs(g["source"]),
            }
        )
        devices.append(rec)
    return ("gpus.json", d["generated"], s, {"devices": devices})


def drivers(src):
    d = json.loads((src / "drivers.json").read_text())
    s = Sources()
    archs = {}
    for name, a in d["architecture_support"].items():
        archs[name] = {
            "last_driver_branch": branch_num(a["last_driver_branch"]),
            "kernel_module": a.get("kernel_module"),
            "source": s.refs(a["source"]),
        }
    branches = [
        {
            "branch": branch_num(b["branch"]),
            "max_cuda": b["max_cuda"],
            "archs": b["architectures"],
            "lifecycle": b["lifecycle"],
            # End of life (YYYY-MM); set only from corrections.json, where a quote backs it.
            "eol": None,
            "notes": b["notes"],
            "inferred": b["inferred"],
            "source": s.refs(b["source"]),
        }
        for b in d["branches"]
    ]
    packages = [
        {
            "distro": p["distro"],
            "release": p["release"],
            "codename": p["codename"],
            "package": p["package"],
            "version": p["version"],
            "suite": p["suite"],
            "branch": branch_num(p["branch"]),
            "inferred": p.get("inferred", []),
            "source": s.refs(p["source"]),
        }
        for p in d["distro_packages"]
    ]
    notes = [
        {"fact": n["fact"], "inferred": n.get("inferred", []), "source": s.refs(n["source"])}
        for n in d["distro_notes"]
    ]
    return (
        "drivers.json",
        d["generated"],
        s,
        {"architectures": archs, "branches": branches, "distro_packages": packages, "distro_notes": notes},
    )


def cuda(src):
    d = json.loads((src / "cuda.json").read_text())
    s = Sources()
    versions = [
        {
            "version": v["version"],
            "min_driver": v["min_driver_linux"],
            "branch": branch_num(v["driver_branch"]),
            "cc_min": v["cc_min"],
            "cc_max": v["cc_max"],
            "sm": v.get("sm_targets"),
            "inferred": v["inferred"],
            "source": s.refs(v["source"]),
        }
        for v in d["versions"]
    ]
    # NVIDIA's forward-compatibility table is not in the shared base: every row comes from
    # corrections.json, each with its quote (tests/compat_sources.rs re-renders the row).
    return ("cuda.json", d["generated"], s, {"versions": versions, "forward_compat": []})


def triton(src):
    d = json.loads((src / "triton.json").read_text())
    s = Sources()
    releases = [
        {
            "release": r["release"],
            "cuda": r["cuda_version"],
            "driver_min": r["driver_min"],
            "dc_compat_drivers": r["datacenter_compat_drivers"],
            "mvc_floor": r["minor_version_compat_floor"],
            "cc_min": r["cc_min_documented"],
            "ort": r["onnxruntime_version"],
            "ort_min_cc": r["onnxruntime_min_cc"],
            "ort_max_ir": r["onnxruntime_max_ir_version"],
            "ort_max_opset": r["onnxruntime_max_opset"],
            "trt": r["tensorrt_version"],
            "trt_series": r["tensorrt_series"],
            "trt_min_cc": r["tensorrt_min_cc"],
            "conflicts": r["conflicts"],
            "inferred": r["inferred"],
            "source": s.refs(r["source"]),
        }
        for r in d["releases"]
    ]
    return ("triton.json", d["generated"], s, {"releases": releases})


def onnx(src):
    d = json.loads((src / "onnx.json").read_text())
    s = Sources()
    ort = [
        {
            "version": o["onnxruntime"],
            "max_ir": o["max_ir_version"],
            "max_opset": o["max_opset"],
            "inferred": o["inferred"],
            "source": s.refs(o["source"]),
        }
        for o in d["onnxruntime"]
    ]
    py = [
        {
            "version": o["onnx"],
            "ir": o["ir_version"],
            "max_opset": o["max_opset"],
            "inferred": o.get("inferred", []),
            "source": s.refs(o["source"]),
        }
        for o in d["onnx_python_releases"]
    ]
    return ("onnx.json", d["generated"], s, {"ort": ort, "onnx": py})


# Key field of each table, for matching corrections and keeping tables sorted.
KEYS = {
    ("gpus", "devices"): "id",
    ("drivers", "branches"): "branch",
    ("drivers", "distro_packages"): None,
    ("cuda", "versions"): "version",
    ("cuda", "forward_compat"): "package",
    ("triton", "releases"): "release",
    ("onnx", "ort"): "version",
    ("onnx", "onnx"): "version",
}


def sort_key(table, key):
    """Versions sort numerically (13.10 after 13.9); other keys as they are."""

    def k(rec):
        v = rec[key]
        if isinstance(v, str) and v.startswith("cuda-compat-"):
            v = v.removeprefix("cuda-compat-").replace("-", ".")
        if isinstance(v, str) and all(p.isdigit() for p in v.split(".")):
            return tuple(int(p) for p in v.split("."))
        return v

    return k


def apply_rules(domain, tables, rules):
    """Null a codename-inferred compute capability whose chip no chip-cc rule covers."""
    if domain != "gpus":
        return
    import re

    chip_cc = next(r for r in rules if r["id"] == "chip-cc")
    for g in tables["devices"]:
        if "compute_capability" not in g["inferred"]:
            continue
        rule = next((c for c in chip_cc["chips"] if re.search(c["chip"], g["chip"] or "")), None)
        if rule is not None and rule["cc"] == g["cc"]:
            continue
        g["cc"] = None
        g["cc_basis"] = "unknown: no primary source gives this id's compute capability (codename inference not covered by rules.json chip-cc)"
        g["inferred"] = [i for i in g["inferred"] if i != "compute_capability"]
        g["inferred"].append("architecture (from chip codename only)")


def apply_corrections(domain, tables, sources, entries):
    """Apply corrections.json entries for one domain; every entry's source joins the record's."""
    for e in entries:
        if e["file"] != domain:
            continue
        table = tables[e["table"]]
        key = KEYS[(domain, e["table"])]
        if "add" in e:
            rec = dict(e["add"])
            match = {key: rec[key]} if key else {k: rec[k] for k in ("distro", "codename", "package", "suite")}
            if any(all(r.get(k) == v for k, v in match.items()) for r in table):
                sys.exit(f"error: corrections.json adds {match} to {domain}.{e['table']}, which already has it")
            rec.setdefault("inferred", [])
            rec["source"] = []
            table.append(rec)
            if key:
                table.sort(key=sort_key(table, key))
        else:
            match = e["match"]
        found = [r for r in table if all(r.get(k) == v for k, v in match.items())]
        if len(found) != 1:
            sys.exit(f"error: corrections.json entry {match} matches {len(found)} records of {domain}.{e['table']}")
        rec = found[0]
        for field, value in e.get("set", {}).items():
            if field not in rec:
                sys.exit(f"error: corrections.json sets unknown field {field} on {match}")
            rec[field] = value
        drop = e.get("drop_inferred", [])
        rec["inferred"] = [i for i in rec["inferred"] if not any(i.startswith(d) for d in drop)]
        rec["inferred"].extend(e.get("add_inferred", []))
        cite = f"{e['source']} (checked {e['checked']})"
        for i in sources.refs([cite]):
            if i not in rec["source"]:
                rec["source"].append(i)


def main():
    src = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "compat"
    if not (src / "gpus.json").is_file():
        sys.exit(f"error: {src} has no gpus.json; pass the shared compat folder as the argument")
    corrections = json.loads((HERE / "corrections.json").read_text())
    rules = json.loads((HERE / "rules.json").read_text())["rules"]
    snapshot = corrections["snapshot"]
    for build in (gpus, drivers, cuda, triton, onnx):
        name, generated, sources, tables = build(src)
        domain = name.removesuffix(".json")
        apply_rules(domain, tables, rules)
        apply_corrections(domain, tables, sources, corrections["entries"])
        write(
            HERE / name,
            f"pvegpu-compat/{domain}/1",
            f"shared/compat/{name} generated {generated}, with data/compat/corrections.json",
            snapshot,
            sources,
            tables,
        )
        counts = ", ".join(f"{k}: {len(v)}" for k, v in tables.items())
        print(f"data/compat/{name}: {counts}, {len(sources.items)} sources")


if __name__ == "__main__":
    main()
