//! The knowledge base against its own evidence (issue #16, "Current data"):
//!
//! * every entry of data/compat/corrections.json says what its quote says: each claimed value
//!   equals the built record's and appears in the stored verbatim quote, every value a
//!   correction sets is claimed by some quote, and the record cites the source (a row of
//!   NVIDIA's forward-compatibility table is re-rendered from the quoted column headers);
//! * every `inferred` value in data/compat/*.json has a rule behind it in
//!   data/compat/rules.json, and a compute capability inferred from a chip codename matches
//!   its chip's rule.
//!
//! Both checks are functions that return the problems they find, so the tests below also
//! feed them deliberately broken records and require a failure.

use pvegpu::compat::driver::month_text;
use serde_json::Value;
use std::collections::BTreeMap;

const FILES: [(&str, &str); 5] = [
    ("gpus", include_str!("../data/compat/gpus.json")),
    ("drivers", include_str!("../data/compat/drivers.json")),
    ("cuda", include_str!("../data/compat/cuda.json")),
    ("triton", include_str!("../data/compat/triton.json")),
    ("onnx", include_str!("../data/compat/onnx.json")),
];
const CORRECTIONS: &str = include_str!("../data/compat/corrections.json");
const RULES: &str = include_str!("../data/compat/rules.json");

/// Fields of free text a correction may set without a quote that repeats them.
const FREE_TEXT: [&str; 3] = ["lifecycle", "notes", "inferred"];

fn files() -> BTreeMap<&'static str, Value> {
    FILES
        .iter()
        .map(|(name, text)| (*name, serde_json::from_str(text).unwrap()))
        .collect()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// Whitespace collapsed, so a quote copied from a rendered table compares as its text.
fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// How a source writes a value: `2026-06` as `June 2026` (NVIDIA's lifecycle tables), other
/// strings and numbers as they are.
fn as_written(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => {
            let b = s.as_bytes();
            let year_month = b.len() == 7
                && b[4] == b'-'
                && b.iter()
                    .enumerate()
                    .all(|(i, c)| i == 4 || c.is_ascii_digit());
            Some(if year_month { month_text(s) } else { s.clone() })
        }
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Why `quote` does not say `field = value` of `rec`; None when it does. A list says each of
/// its values, except the drivers of a forward-compatibility row: the quote must hold the
/// table's row as it renders from its own column headers (C where the record names the
/// branch, N/A in the column of the package's own CUDA release, X elsewhere).
fn unsaid(
    file: &str,
    table: &str,
    rec: &Value,
    field: &str,
    value: &Value,
    quote: &str,
) -> Option<String> {
    if (file, table, field) == ("cuda", "forward_compat", "drivers") {
        let package = rec["package"].as_str().unwrap_or_default();
        return match compat_row(quote, package, value) {
            Ok(row) if quote.contains(&row) => None,
            Ok(row) => Some(format!("but its quote has no row {row:?}")),
            Err(e) => Some(e),
        };
    }
    let texts: Vec<Option<String>> = match value {
        Value::Array(items) => items.iter().map(as_written).collect(),
        v => vec![as_written(v)],
    };
    for text in texts {
        match text {
            Some(text) if quote.contains(&collapse(&text)) => {}
            Some(text) => return Some(format!("but its quote does not say {text:?}")),
            None => return Some("which is not a value".into()),
        }
    }
    None
}

/// The row of NVIDIA's forward-compatibility table that says `drivers` for `package`, from
/// the column headers in `quote` (`535+ (CUDA 12.2) |`).
fn compat_row(quote: &str, package: &str, drivers: &Value) -> Result<String, String> {
    let header = regex::Regex::new(r"(\d+)\+ \(CUDA (\d+)\.(\d+)\) \|").unwrap();
    let columns: Vec<(String, String)> = header
        .captures_iter(quote)
        .map(|c| (c[1].to_string(), format!("cuda-compat-{}-{}", &c[2], &c[3])))
        .collect();
    if columns.is_empty() {
        return Err("but its quote has no column headers like `535+ (CUDA 12.2) |`".into());
    }
    let drivers: Vec<&str> = drivers
        .as_array()
        .map(|d| d.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(d) = drivers
        .iter()
        .find(|d| !columns.iter().any(|(b, _)| b == *d))
    {
        return Err(format!("but {d} is no column of its quote"));
    }
    let cells: Vec<&str> = columns
        .iter()
        .map(|(branch, own)| {
            if drivers.contains(&branch.as_str()) {
                "C"
            } else if own == package {
                "N/A"
            } else {
                "X"
            }
        })
        .collect();
    Ok(format!("{package} | {} |", cells.join(" | ")))
}

/// The key field of each table (None: match on the whole `match` object).
fn key(file: &str, table: &str) -> Option<&'static str> {
    match (file, table) {
        ("gpus", "devices") => Some("id"),
        ("drivers", "branches") => Some("branch"),
        ("cuda", "versions") => Some("version"),
        ("cuda", "forward_compat") => Some("package"),
        ("triton", "releases") => Some("release"),
        ("onnx", "ort" | "onnx") => Some("version"),
        _ => None,
    }
}

/// What an entry matches: its `match`, or the key fields of the record it adds.
fn matcher(e: &Value) -> Value {
    if let Some(m) = e.get("match") {
        return m.clone();
    }
    let add = &e["add"];
    let file = e["file"].as_str().unwrap_or_default();
    let table = e["table"].as_str().unwrap_or_default();
    let mut m = serde_json::Map::new();
    match key(file, table) {
        Some(k) => {
            m.insert(k.into(), add[k].clone());
        }
        None => {
            for k in ["distro", "codename", "package", "suite"] {
                m.insert(k.into(), add[k].clone());
            }
        }
    }
    Value::Object(m)
}

fn matches(rec: &Value, m: &Value) -> bool {
    m.as_object()
        .is_some_and(|m| m.iter().all(|(k, v)| &rec[k] == v))
}

fn is_day(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Every way a correction or spot check says more than its quote.
fn quote_problems(corrections: &Value, files: &BTreeMap<&str, Value>) -> Vec<String> {
    let mut out = Vec::new();
    let snapshot = corrections["snapshot"].as_str().unwrap_or_default();
    if !is_day(snapshot) {
        out.push(format!("snapshot {snapshot:?} is not YYYY-MM-DD"));
    }
    for (name, f) in files {
        if f["snapshot"].as_str() != Some(snapshot) {
            out.push(format!(
                "{name}.json's snapshot is not corrections.json's {snapshot}: rebuild with data/compat/build.py"
            ));
        }
    }
    let entries = corrections["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // Per record: the fields some quote backs.
    let mut claimed: Vec<(Value, String, Value)> = Vec::new();
    for e in &entries {
        let file = e["file"].as_str().unwrap_or_default();
        let table = e["table"].as_str().unwrap_or_default();
        let m = matcher(e);
        let what = format!("{file}.{table} {m}");
        let source = e["source"].as_str().unwrap_or_default();
        let quote = collapse(e["quote"].as_str().unwrap_or_default());
        let checked = e["checked"].as_str().unwrap_or_default();
        if source.is_empty() || quote.is_empty() {
            out.push(format!("{what}: no source or no quote"));
        }
        if !is_day(checked) || checked > snapshot {
            out.push(format!(
                "{what}: checked {checked:?} is not a day on or before the snapshot"
            ));
        }
        let claims = e["claims"].as_object().cloned().unwrap_or_default();
        if claims.is_empty() {
            out.push(format!("{what}: claims nothing the quote says"));
        }
        let Some(f) = files.get(file) else {
            out.push(format!("{what}: no file {file}"));
            continue;
        };
        let records: Vec<&Value> = f[table]
            .as_array()
            .map(|a| a.iter().filter(|r| matches(r, &m)).collect())
            .unwrap_or_default();
        let [rec] = records[..] else {
            out.push(format!("{what}: matches {} records", records.len()));
            continue;
        };
        for (field, value) in &claims {
            if &rec[field] != value {
                out.push(format!(
                    "{what}: claims {field} = {value}, the data has {}",
                    rec[field]
                ));
            }
            if let Some(problem) = unsaid(file, table, rec, field, value, &quote) {
                out.push(format!("{what}: claims {field} = {value}, {problem}"));
            }
            claimed.push((m.clone(), format!("{file}.{table}.{field}"), value.clone()));
        }
        let cite = format!("{source} (checked {checked})");
        let sources = f["sources"].as_array().cloned().unwrap_or_default();
        let cited = rec["source"].as_array().is_some_and(|idx| {
            idx.iter()
                .filter_map(|i| sources.get(i.as_u64()? as usize))
                .any(|s| s == &Value::from(cite.clone()))
        });
        if !cited {
            out.push(format!("{what}: the record does not cite {cite:?}"));
        }
    }
    // Every value a correction sets, or the key of a record it adds, is claimed by a quote.
    for e in &entries {
        let file = e["file"].as_str().unwrap_or_default();
        let table = e["table"].as_str().unwrap_or_default();
        let m = matcher(e);
        let mut must: Vec<(String, Value)> = e["set"]
            .as_object()
            .map(|s| {
                s.iter()
                    .filter(|(k, v)| !v.is_null() && !FREE_TEXT.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(k) = key(file, table).filter(|_| e.get("add").is_some()) {
            must.push((k.to_string(), e["add"][k].clone()));
        }
        for (field, value) in must {
            let path = format!("{file}.{table}.{field}");
            if !claimed
                .iter()
                .any(|(cm, p, v)| cm == &m && p == &path && v == &value)
            {
                out.push(format!(
                    "{file}.{table} {m}: sets {field} = {value} without a quote that says it"
                ));
            }
        }
    }
    out
}

/// Every `inferred` entry of one record, with the record.
fn inferred_entries<'a>(v: &'a Value, out: &mut Vec<(&'a Value, &'a str)>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(inf)) = map.get("inferred") {
                for i in inf {
                    out.push((v, i.as_str().unwrap_or_default()));
                }
            }
            for (k, child) in map {
                if k != "inferred" {
                    inferred_entries(child, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| inferred_entries(i, out)),
        _ => {}
    }
}

/// Every inferred value without a rule behind it.
fn rule_problems(rules: &Value, files: &BTreeMap<&str, Value>) -> Vec<String> {
    let mut out = Vec::new();
    let rules = rules["rules"].as_array().cloned().unwrap_or_default();
    for (name, f) in files {
        let mut entries = Vec::new();
        inferred_entries(f, &mut entries);
        for (rec, text) in entries {
            let what = rec
                .get("id")
                .or_else(|| rec.get("release"))
                .or_else(|| rec.get("branch"))
                .or_else(|| rec.get("version"))
                .or_else(|| rec.get("package"))
                .map(Value::to_string)
                .unwrap_or_default();
            let rule = rules.iter().find(|r| {
                r["file"] == *name
                    && r["inferred"].as_array().is_some_and(|p| {
                        p.iter()
                            .any(|p| text.starts_with(p.as_str().unwrap_or("\u{0}")))
                    })
            });
            let Some(rule) = rule else {
                out.push(format!(
                    "{name}.json {what}: inferred {text:?} has no rule in rules.json"
                ));
                continue;
            };
            if rule["id"] == "chip-cc" {
                let chip = rec["chip"].as_str().unwrap_or_default();
                let by_chip = rule["chips"].as_array().and_then(|cs| {
                    cs.iter().find(|c| {
                        regex::Regex::new(c["chip"].as_str().unwrap_or("$^"))
                            .is_ok_and(|re| re.is_match(chip))
                    })
                });
                match by_chip {
                    Some(c) if c["cc"] == rec["cc"] => {}
                    Some(c) => out.push(format!(
                        "{name}.json {what}: CC {} inferred from chip {chip}, whose rule says {}",
                        rec["cc"], c["cc"]
                    )),
                    None => out.push(format!(
                        "{name}.json {what}: CC {} inferred from chip {chip}, which no chip-cc rule covers",
                        rec["cc"]
                    )),
                }
            }
        }
    }
    out
}

#[test]
fn every_correction_and_spot_check_says_what_its_quote_says() {
    let problems = quote_problems(&json(CORRECTIONS), &files());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_issues_examples_are_quoted() {
    // Triton 26.07 is CUDA 13.3.1 per its notes (it was 13.3.0, from the vLLM container).
    let c = json(CORRECTIONS);
    let e = c["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["match"]["release"] == "26.07" && e.get("set").is_some())
        .unwrap();
    assert!(e["quote"].as_str().unwrap().contains("CUDA 13.3.1"));
    let t = pvegpu::compat::tables();
    assert_eq!(t.triton_release("26.07").unwrap().cuda.raw, "13.3.1");
    assert_eq!(t.triton_release("26.08").unwrap().cuda.raw, "13.4.1");
    // 26.04 from its own notes: driver 575 (not the CUDA table's 595), and a data-center list.
    let r2604 = t.triton_release("26.04").unwrap();
    assert_eq!(r2604.driver_min.as_ref().unwrap().raw, "575");
    assert_eq!(r2604.dc_compat_drivers.as_ref().unwrap().len(), 4);
    assert!(r2604.inferred.iter().all(|i| !i.starts_with("driver_min")));
    assert_eq!(t.branch(620).unwrap().eol.as_deref(), Some("2029-09"));
    assert_eq!(t.branch(580).unwrap().eol.as_deref(), Some("2028-06"));
    // The GB20B ids NVIDIA publishes no CC for are unknown; the GB10 it lists keeps 12.1.
    for id in ["10de:2e03", "10de:2e06", "10de:2e13", "10de:2e2a"] {
        assert_eq!(t.gpu(id.parse().unwrap()).unwrap().cc, None, "{id}");
    }
    assert!(t.gpu("10de:2e12".parse().unwrap()).unwrap().cc.is_some());
}

#[test]
fn every_inferred_value_has_a_rule() {
    let problems = rule_problems(&json(RULES), &files());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The entry of corrections.json that sets 26.07's CUDA version.
fn entry_26_07(c: &mut Value) -> &mut Value {
    c["entries"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["match"]["release"] == "26.07" && e.get("set").is_some())
        .unwrap()
}

#[test]
fn a_record_that_claims_more_than_its_quote_fails() {
    // The quote no longer says the claimed CUDA version.
    let mut c = json(CORRECTIONS);
    entry_26_07(&mut c)["quote"] = "Release 26.07 is based on CUDA 13.3.0.".into();
    let p = quote_problems(&c, &files());
    assert!(
        p.iter().any(|p| p.contains("does not say \"13.3.1\"")),
        "{p:?}"
    );

    // The data says something else than the claim.
    let mut f = files();
    for r in f.get_mut("triton").unwrap()["releases"]
        .as_array_mut()
        .unwrap()
    {
        if r["release"] == "26.07" {
            r["cuda"] = "13.3.0".into();
        }
    }
    let p = quote_problems(&json(CORRECTIONS), &f);
    assert!(
        p.iter().any(|p| p.contains("the data has \"13.3.0\"")),
        "{p:?}"
    );

    // A value set with no quote behind it.
    let mut c = json(CORRECTIONS);
    entry_26_07(&mut c)["claims"]
        .as_object_mut()
        .unwrap()
        .remove("cuda");
    let p = quote_problems(&c, &files());
    assert!(p.iter().any(|p| p.contains("without a quote")), "{p:?}");

    // An end-of-life month the quote does not name.
    let mut f = files();
    for b in f.get_mut("drivers").unwrap()["branches"]
        .as_array_mut()
        .unwrap()
    {
        if b["branch"] == 580 {
            b["eol"] = "2028-08".into();
        }
    }
    let mut c = json(CORRECTIONS);
    for e in c["entries"].as_array_mut().unwrap() {
        if e["match"]["branch"] == 580 {
            e["claims"]["eol"] = "2028-08".into();
        }
    }
    let p = quote_problems(&c, &f);
    assert!(p.iter().any(|p| p.contains("\"August 2028\"")), "{p:?}");
}

#[test]
fn a_forward_compatibility_row_must_be_the_tables_row() {
    // NVIDIA's table marks R580 compatible with cuda-compat-13-2; the data must say so.
    let mut f = files();
    for r in f.get_mut("cuda").unwrap()["forward_compat"]
        .as_array_mut()
        .unwrap()
    {
        if r["package"] == "cuda-compat-13-2" {
            r["drivers"] = serde_json::json!(["535", "570", "580", "590", "595"]);
        }
    }
    let mut c = json(CORRECTIONS);
    for e in c["entries"].as_array_mut().unwrap() {
        if e["add"]["package"] == "cuda-compat-13-2" {
            e["add"]["drivers"] = serde_json::json!(["535", "570", "580", "590", "595"]);
            e["claims"]["drivers"] = e["add"]["drivers"].clone();
        }
    }
    let p = quote_problems(&c, &f);
    assert!(
        p.iter()
            .any(|p| p.contains("no row \"cuda-compat-13-2 | C | C | C | C | C | X | X |\"")),
        "{p:?}"
    );
    // A branch the quote has no column for.
    for e in c["entries"].as_array_mut().unwrap() {
        if e["add"]["package"] == "cuda-compat-13-2" {
            e["claims"]["drivers"] = serde_json::json!(["470"]);
        }
    }
    let p = quote_problems(&c, &f);
    assert!(p.iter().any(|p| p.contains("470 is no column")), "{p:?}");
    // Every row of the built table is claimed by a quote.
    let t = pvegpu::compat::tables();
    let claimed: Vec<Value> = json(CORRECTIONS)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["table"] == "forward_compat")
        .map(|e| e["claims"]["package"].clone())
        .collect();
    assert_eq!(claimed.len(), t.forward_compat.len());
    for p in &t.forward_compat {
        assert!(
            claimed.contains(&Value::from(p.package.clone())),
            "{}",
            p.package
        );
    }
}

#[test]
fn an_inferred_value_without_a_rule_fails() {
    // A guess with no rule: the GB20B CC back on an id NVIDIA's list does not name.
    let mut f = files();
    for g in f.get_mut("gpus").unwrap()["devices"]
        .as_array_mut()
        .unwrap()
    {
        if g["id"] == "10de:2e03" {
            g["cc"] = "12.1".into();
            g["inferred"] = serde_json::json!(["compute_capability"]);
        }
    }
    let p = rule_problems(&json(RULES), &f);
    assert!(
        p.iter().any(|p| p.contains("no chip-cc rule covers")),
        "{p:?}"
    );

    // An inferred text no rule knows.
    let mut f = files();
    for r in f.get_mut("triton").unwrap()["releases"]
        .as_array_mut()
        .unwrap()
    {
        if r["release"] == "26.08" {
            r["inferred"]
                .as_array_mut()
                .unwrap()
                .push("driver_min (guessed)".into());
        }
    }
    let p = rule_problems(&json(RULES), &f);
    assert!(p.iter().any(|p| p.contains("has no rule")), "{p:?}");

    // A chip rule that says another CC than the data.
    let mut f = files();
    for g in f.get_mut("gpus").unwrap()["devices"]
        .as_array_mut()
        .unwrap()
    {
        if g["id"] == "10de:2909" {
            g["cc"] = "10.3".into();
        }
    }
    let p = rule_problems(&json(RULES), &f);
    assert!(p.iter().any(|p| p.contains("whose rule says")), "{p:?}");
}
