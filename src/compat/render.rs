//! The text `pvegpu compat` prints.

use super::driver::{DriverSource, month_text};
use super::recommend::Recommendation;
use super::triton::{DriverFit, ReleaseChoice, branches_text};
use std::fmt::Write;

pub fn text(r: &Recommendation) -> String {
    let mut o = String::new();
    let _ = write_text(&mut o, r);
    o
}

fn write_text(o: &mut String, r: &Recommendation) -> std::fmt::Result {
    gpus(o, r)?;
    driver(o, r)?;
    cuda(o, r)?;
    triton(o, r)?;
    reasons(o, r)
}

fn gpus(o: &mut String, r: &Recommendation) -> std::fmt::Result {
    writeln!(o, "GPUs")?;
    for g in &r.gpus {
        let brand = g.brand.as_deref().unwrap_or("brand unknown");
        writeln!(
            o,
            "  {}  {} ({})  {}  CC {}  {brand}",
            g.id, g.name, g.chip, g.arch, g.cc
        )?;
    }
    writeln!(
        o,
        "  lowest compute capability {} ({}): it decides CUDA and Triton",
        r.min_cc, r.oldest_arch
    )
}

fn driver(o: &mut String, r: &Recommendation) -> std::fmt::Result {
    writeln!(o, "\nDriver for {}", r.distro)?;
    writeln!(o, "  branch window   {}", r.window)?;
    if let Some(i) = &r.installed {
        let verdict = if i.in_window {
            "inside the window"
        } else {
            "OUTSIDE the window: replace it"
        };
        let branch = if i.version.is_branch_only() {
            String::new()
        } else {
            format!("R{}, ", i.branch)
        };
        writeln!(
            o,
            "  installed       {} ({branch}CUDA {} natively): {verdict}",
            i.version, i.max_cuda
        )?;
    }
    match &r.driver.source {
        DriverSource::Distro {
            package,
            version,
            suite,
        } => writeln!(o, "  package         {package} {version} from {suite}")?,
        DriverSource::NvidiaRepository => writeln!(
            o,
            "  package         NVIDIA's CUDA repository, branch R{} (no {} package fits)",
            r.driver.branch, r.distro
        )?,
    }
    let m = &r.kernel_module;
    let need = if m.required { "required" } else { "preferred" };
    writeln!(o, "  kernel module   {} ({need}: {})", m.flavour, m.why)?;
    for l in &r.lifecycle {
        let head = format!("  end of life     R{} ({})", l.branch, l.role);
        match (&l.eol, l.past_eol, l.instead) {
            (Some(e), true, Some(i)) => writeln!(
                o,
                "{head}: {}, PAST as of {}: move to R{i}",
                month_text(e),
                l.as_of
            )?,
            (Some(e), true, None) => writeln!(
                o,
                "{head}: {}, PAST as of {}: no branch of the window is supported",
                month_text(e),
                l.as_of
            )?,
            (Some(e), false, _) => writeln!(o, "{head}: {}", month_text(e))?,
            (None, _, _) => writeln!(o, "{head}: not in the data")?,
        }
    }
    Ok(())
}

fn cuda(o: &mut String, r: &Recommendation) -> std::fmt::Result {
    writeln!(o, "\nCUDA toolkit")?;
    match (&r.cuda.oldest, &r.cuda.newest) {
        (Some(a), Some(b)) => writeln!(o, "  builds for every GPU   {a} – {b}")?,
        _ => writeln!(o, "  builds for every GPU   none in the table")?,
    }
    match &r.cuda.newest_native {
        Some(n) => writeln!(o, "  native on {:<11} up to {n}", r.assumed_driver),
        None => writeln!(o, "  native on {:<11} none of those", r.assumed_driver),
    }
}

fn triton(o: &mut String, r: &Recommendation) -> std::fmt::Result {
    writeln!(
        o,
        "\nTriton for driver {} (nvcr.io/nvidia/tritonserver:<release>-py3)",
        r.assumed_driver
    )?;
    for b in &r.triton {
        let head = format!("  {:<10}", b.backend.to_string());
        match &b.recommended {
            Some(c) => writeln!(o, "{head}{:<7} {}; {}", c.release, fit(c), details(c))?,
            None => writeln!(
                o,
                "{head}none: {}",
                b.none_because.as_deref().unwrap_or("no release fits")
            )?,
        }
        if let Some(n) = &b.newest {
            let native = match (&n.native_driver, n.native_branches.is_empty()) {
                (Some(d), false) => format!(
                    "; native from driver {d} ({})",
                    branches_text(&n.native_branches)
                ),
                (Some(d), true) => format!("; native from driver {d}, outside the window"),
                (None, _) => String::new(),
            };
            writeln!(
                o,
                "  {:<10}newest for CC {}: {}, {}{native}; {}",
                "",
                r.min_cc,
                n.release,
                fit(n),
                details(n)
            )?;
        }
    }
    Ok(())
}

fn reasons(o: &mut String, r: &Recommendation) -> std::fmt::Result {
    writeln!(o, "\nReasons")?;
    for (i, why) in r.reasons.iter().enumerate() {
        let mark = if why.inferred { "[inferred] " } else { "" };
        writeln!(o, "  {:>2}. {mark}{}", i + 1, why.text)?;
        if let Some(first) = why.source.first() {
            let more = match why.source.len() {
                1 => String::new(),
                n => format!(" (+{} more)", n - 1),
            };
            writeln!(o, "      source: {first}{more}")?;
        }
    }
    Ok(())
}

fn fit(c: &ReleaseChoice) -> String {
    match &c.driver_fit {
        DriverFit::Unmet => "driver too old".into(),
        f => f.describe(),
    }
}

fn details(c: &ReleaseChoice) -> String {
    let mut d = format!("CUDA {}", c.cuda);
    if let Some(ort) = &c.onnxruntime {
        d.push_str(&format!(", ONNX Runtime {ort}"));
        if let (Some(ir), Some(op)) = (c.max_ir_version, c.max_opset) {
            d.push_str(&format!(" (IR <= {ir}, opset <= {op})"));
        }
    }
    if let Some(trt) = &c.tensorrt {
        d.push_str(&format!(", TensorRT {trt}"));
    }
    d
}
