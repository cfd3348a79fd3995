#!/usr/bin/env python3
"""Build pvegpu's compatibility tables (data/compat/*.json) from the shared knowledge base.

Usage:  python3 data/compat/build.py [SOURCE_DIR]
        SOURCE_DIR defaults to ../shared/compat beside the repository.

The output is committed, so the repository builds without SOURCE_DIR; `cargo test --test
compat` checks the committed tables against SOURCE_DIR whenever it exists.

Format (one file per domain, JSON, one record per line so diffs stay readable):

    {"schema": "pvegpu-compat/<domain>/1", "from": "<file> generated <date>",
     "sources": ["<citation>", ...],
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
  cuda: min_driver_linux->min_driver, driver_branch->branch (number), sm_targets->sm
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


def write(path, schema, origin, sources, tables):
    """One record per line; the header and table names pretty-printed."""
    lines = ["{", f'  "schema": {json.dumps(schema)},', f'  "from": {json.dumps(origin)},']
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
    return ("cuda.json", d["generated"], s, {"versions": versions})


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


def main():
    src = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "compat"
    if not (src / "gpus.json").is_file():
        sys.exit(f"error: {src} has no gpus.json; pass the shared compat folder as the argument")
    for build in (gpus, drivers, cuda, triton, onnx):
        name, generated, sources, tables = build(src)
        domain = name.removesuffix(".json")
        write(HERE / name, f"pvegpu-compat/{domain}/1", f"shared/compat/{name} generated {generated}", sources, tables)
        counts = ", ".join(f"{k}: {len(v)}" for k, v in tables.items())
        print(f"data/compat/{name}: {counts}, {len(sources.items)} sources")


if __name__ == "__main__":
    main()
