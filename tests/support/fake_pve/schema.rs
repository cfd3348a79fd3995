//! Request validation against the official Proxmox VE API schema, the way
//! `PVE::JSONSchema` does it (see `../shared/pve-api/NOTES.md` §4).
//!
//! The schema is loaded at run time from `../shared/pve-api/{schema,formats}.json` and is
//! never copied into this repository. Each parameter gets one error, the first failing
//! check in the order: missing, type, format, pattern, maxLength, minLength, maximum,
//! minimum, enum. Unknown parameters and `requires` are reported as PVE does.

use regex::Regex;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Parameters of one request: name -> JSON value (strings from forms and queries,
/// arrays for repeated keys, native types from JSON bodies).
pub type Params = BTreeMap<String, Value>;

pub struct Schema {
    paths: Map<String, Value>,
    formats: Value,
    regexes: Mutex<HashMap<String, Option<Regex>>>,
}

/// Where the shared schema lives: `$CARGO_MANIFEST_DIR/../shared/pve-api`.
pub fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pve-api")
}

/// The apidoc tree of schema-full.json (`[{path, info, children}]`) into `paths`, where a
/// path is not there yet.
fn add_missing_paths(tree: &Value, paths: &mut serde_json::Map<String, Value>) {
    for node in tree.as_array().into_iter().flatten() {
        if let (Some(path), Some(info)) = (node["path"].as_str(), node.get("info")) {
            paths
                .entry(path.to_string())
                .or_insert_with(|| info.clone());
        }
        add_missing_paths(&node["children"], paths);
    }
}

impl Schema {
    /// Load schema.json and formats.json from `dir`; `None` when either is absent.
    pub fn load(dir: &Path) -> Option<Schema> {
        let schema = std::fs::read_to_string(dir.join("schema.json")).ok()?;
        let formats = std::fs::read_to_string(dir.join("formats.json")).ok()?;
        let schema: Value = serde_json::from_str(&schema).expect("schema.json parses");
        let formats: Value = serde_json::from_str(&formats).expect("formats.json parses");
        let mut paths = schema["paths"]
            .as_object()
            .expect("schema.json has paths")
            .clone();
        // The subset lacks a few paths pvegpu calls (`/access/permissions`): the full tree
        // has every one.
        if let Some(full) = std::fs::read_to_string(dir.join("schema-full.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        {
            add_missing_paths(&full, &mut paths);
        }
        Some(Schema {
            paths,
            formats,
            regexes: Mutex::new(HashMap::new()),
        })
    }

    /// The method info of `METHOD path-template`, if the schema has it.
    pub fn method(&self, template: &str, method: &str) -> Option<&Value> {
        self.paths.get(template)?.get(method)
    }

    /// Validate `params` for `METHOD template`. `Err` carries the `errors` map.
    pub fn validate(
        &self,
        template: &str,
        method: &str,
        params: &mut Params,
    ) -> Result<(), BTreeMap<String, String>> {
        let Some(info) = self.method(template, method) else {
            return Ok(());
        };
        let props = info["parameters"]["properties"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut errors = BTreeMap::new();
        // Resolve every given key to its schema (indexed `name[n]` included).
        for (key, value) in params.iter_mut() {
            let Some(prop) = self.lookup_prop(&props, key) else {
                errors.insert(
                    key.clone(),
                    "property is not defined in schema and the schema does not allow additional properties"
                        .to_string(),
                );
                continue;
            };
            if let Err(e) = self.check_prop(key, &prop, value) {
                errors.insert(key.clone(), e);
            }
        }
        for (name, prop) in &props {
            if name.ends_with("[n]") {
                continue;
            }
            if !params.contains_key(name) && !is_true(&prop["optional"]) {
                errors.insert(
                    name.clone(),
                    "property is missing and it is not optional".to_string(),
                );
            }
            if let (Some(req), true) = (prop["requires"].as_str(), params.contains_key(name))
                && !params.contains_key(req)
                && !errors.contains_key(req)
            {
                errors.insert(
                    req.to_string(),
                    format!("missing property required by '{name}'"),
                );
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn lookup_prop(&self, props: &Map<String, Value>, key: &str) -> Option<Value> {
        if let Some(p) = props.get(key) {
            return Some(p.clone());
        }
        let digits = key.trim_start_matches(|c: char| !c.is_ascii_digit());
        let base = &key[..key.len() - digits.len()];
        if digits.is_empty() || base.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        if digits.len() > 1 && digits.starts_with('0') {
            return None;
        }
        let n: u64 = digits.parse().ok()?;
        let range = &self.formats["indexed_properties"][base];
        let (min, max) = (range["min"].as_u64()?, range["max"].as_u64()?);
        if n < min || n > max {
            return None;
        }
        props.get(&format!("{base}[n]")).cloned()
    }

    /// One parameter, first failing check wins. Normalises `value` (wrapping into
    /// arrays, joining `-list` arrays) the way the server does before validation.
    fn check_prop(&self, path: &str, prop: &Value, value: &mut Value) -> Result<(), String> {
        let ty = prop["type"].as_str().unwrap_or("string");
        let format_name = prop["format"].as_str().unwrap_or("");
        if ty == "array" {
            if !value.is_array() {
                *value = Value::Array(vec![value.clone()]);
            }
            let items = prop["items"].clone();
            if let Value::Array(list) = value {
                for item in list.iter_mut() {
                    self.check_prop(path, &items, item)?;
                }
            }
            return Ok(());
        }
        if ty == "string"
            && format_name.ends_with("-list")
            && let Value::Array(list) = value
        {
            let joined: Vec<String> = list.iter().map(scalar_text).collect();
            *value = Value::String(joined.join(","));
        }
        check_type(ty, value)?;
        let text = scalar_text(value);
        match &prop["format"] {
            Value::String(name) => self
                .check_named_format(path, name, &text)
                .map_err(|e| format!("invalid format - {e}"))?,
            Value::Object(inline) => self
                .check_property_string(path, inline, &text)
                .map_err(|e| format!("invalid format - {e}"))?,
            _ => {}
        }
        self.check_constraints(prop, &text)
    }

    /// pattern, maxLength, minLength, maximum, minimum, enum.
    fn check_constraints(&self, prop: &Value, text: &str) -> Result<(), String> {
        if let Some(p) = prop["pattern"].as_str() {
            match self.regex(p) {
                Some(re) if !re.is_match(text) => {
                    return Err("value does not match the regex pattern".to_string());
                }
                _ => {}
            }
        }
        let chars = text.chars().count() as u64;
        if let Some(max) = prop["maxLength"].as_u64()
            && chars > max
        {
            return Err(format!("value may only be {max} characters long"));
        }
        if let Some(min) = prop["minLength"].as_u64()
            && chars < min
        {
            return Err(format!("value must be at least {min} characters long"));
        }
        if let (Some(max), Ok(v)) = (prop["maximum"].as_f64(), text.parse::<f64>())
            && v > max
        {
            return Err(format!(
                "value must have a maximum value of {}",
                num(&prop["maximum"])
            ));
        }
        if let (Some(min), Ok(v)) = (prop["minimum"].as_f64(), text.parse::<f64>())
            && v < min
        {
            return Err(format!(
                "value must have a minimum value of {}",
                num(&prop["minimum"])
            ));
        }
        if let Some(list) = prop["enum"].as_array() {
            let names: Vec<String> = list.iter().map(scalar_text).collect();
            if !names.iter().any(|n| n == text) {
                return Err(format!(
                    "value '{text}' does not have a value in the enumeration '{}'",
                    names.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// A named format: `-list`/`-opt` suffixes, property-string formats, validator formats.
    fn check_named_format(&self, path: &str, name: &str, text: &str) -> Result<(), String> {
        if let Some(base) = name.strip_suffix("-list") {
            for item in split_list(text) {
                self.check_named_format(path, base, &item)?;
            }
            return Ok(());
        }
        if let Some(base) = name.strip_suffix("-opt") {
            if text.is_empty() {
                return Ok(());
            }
            return self.check_named_format(path, base, text);
        }
        if let Some(fmt) = self.formats["property_string_formats"][name].as_object() {
            return self.check_property_string(path, &fmt.clone(), text);
        }
        let Some(v) = self.formats["validator_formats"].get(name) else {
            // Perl-function formats without a transcribed rule: accepted.
            return Ok(());
        };
        let placeholder = |msg: &str| {
            msg.replace("<id>", text)
                .replace("<volid>", text)
                .replace("<size>", text)
                .replace("<text>", text)
                .replace("<value>", text)
                .replace("<dev>", text)
        };
        match name {
            "pve-storage-id" if text.chars().count() < 2 => {
                return Err(format!(
                    "storage ID '{text}' cannot be shorter than 2 characters\n"
                ));
            }
            "pve-storage-id" => {
                let re = self.regex_flags(v["regex"].as_str().unwrap_or(""), "i");
                if re.is_some_and(|re| !re.is_match(text)) {
                    return Err(format!("storage ID '{text}' contains illegal characters\n"));
                }
                return Ok(());
            }
            "pve-volume-id-or-qm-path" if text == "none" || text == "cdrom" => return Ok(()),
            "pve-volume-id-or-qm-path" | "pve-volume-id-or-absolute-path" => {
                if text.starts_with('/') {
                    return Ok(());
                }
                return self.check_named_format(path, "pve-volume-id", text);
            }
            "pve-phys-bits" => {
                let ok = text == "host" || text.parse::<u32>().is_ok_and(|n| (8..=64).contains(&n));
                return if ok {
                    Ok(())
                } else {
                    Err(format!("{}\n", v["error"].as_str().unwrap_or("")))
                };
            }
            _ => {}
        }
        if let Some(re) = v["regex"].as_str() {
            let flags = v["flags"].as_str().unwrap_or("");
            if self
                .regex_flags(re, flags)
                .is_some_and(|re| !re.is_match(text))
            {
                let msg = v["error"]
                    .as_str()
                    .unwrap_or("value does not match the regex pattern");
                return Err(format!("{}\n", placeholder(msg)));
            }
        }
        Ok(())
    }

    /// A property string (`key=value,...`) against its sub-schema.
    fn check_property_string(
        &self,
        path: &str,
        fmt: &Map<String, Value>,
        text: &str,
    ) -> Result<(), String> {
        let default_key = fmt
            .iter()
            .find(|(_, s)| is_true(&s["default_key"]))
            .map(|(k, _)| k.clone());
        let mut default_used = false;
        let mut res: BTreeMap<String, String> = BTreeMap::new();
        for part in text.split(',') {
            if part.trim().is_empty() {
                continue;
            }
            if let Some((k, v)) = part
                .split_once('=')
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
            {
                if res.contains_key(k) {
                    return Err(format!(
                        "duplicate key in comma-separated list property: {k}\n"
                    ));
                }
                let mut key = k.to_string();
                let mut value = v.to_string();
                if let Some(alias_schema) = fmt.get(k).filter(|s| s.get("alias").is_some()) {
                    // `virtio=MAC`: the value goes to the alias target, the key names the model.
                    if let Some(model_key) = alias_schema["keyAlias"].as_str() {
                        res.insert(model_key.to_string(), k.to_string());
                    }
                    key = alias_schema["alias"].as_str().unwrap_or(k).to_string();
                }
                let Some(sub) = fmt.get(&key) else {
                    return Err(format!(
                        "invalid key in comma-separated list property: {k}\n"
                    ));
                };
                if sub["type"] == "boolean" {
                    value = match value.to_ascii_lowercase().as_str() {
                        "1" | "on" | "yes" | "true" => "1".into(),
                        "0" | "off" | "no" | "false" => "0".into(),
                        _ => value,
                    };
                }
                res.insert(key, value);
            } else if !part.contains('=') {
                match &default_key {
                    Some(dk) if !default_used && !res.contains_key(dk) => {
                        res.insert(dk.clone(), part.to_string());
                        default_used = true;
                    }
                    Some(dk) => {
                        return Err(format!(
                            "duplicate key in comma-separated list property: {dk}\n"
                        ));
                    }
                    None => {
                        return Err(
                            "value without key, but schema does not define a default key\n".into(),
                        );
                    }
                }
            } else {
                return Err("missing key in comma-separated list property\n".into());
            }
        }
        let mut errors: BTreeMap<String, String> = BTreeMap::new();
        for (k, sub) in fmt {
            let sub_path = format!("{path}.{k}");
            match res.get(k) {
                None if !is_true(&sub["optional"]) && sub.get("alias").is_none() => {
                    errors.insert(
                        sub_path,
                        "property is missing and it is not optional".into(),
                    );
                }
                None => {}
                Some(v) => {
                    let mut value = Value::String(v.clone());
                    if let Err(e) = self.check_prop(&sub_path, sub, &mut value) {
                        errors.insert(sub_path, e.trim_end_matches('\n').to_string());
                    }
                }
            }
        }
        if errors.is_empty() {
            return Ok(());
        }
        let mut msg = String::from("format error\n");
        for (k, e) in errors {
            msg.push_str(&format!("{k}: {e}\n"));
        }
        Err(msg)
    }

    fn regex(&self, perl: &str) -> Option<Regex> {
        self.regex_flags(perl, "")
    }

    /// Perl `m/^PATTERN$/` in Rust syntax: `(?^:` -> `(?:`, `\0` -> `\x00`, and the anchors
    /// added without a group (so a top-level `|` binds `^`/`$` to the outer alternatives).
    fn regex_flags(&self, perl: &str, flags: &str) -> Option<Regex> {
        let key = format!("{flags}/{perl}");
        let mut cache = self.regexes.lock().unwrap();
        if let Some(r) = cache.get(&key) {
            return r.clone();
        }
        let body = perl
            .replace("(?^i:", "(?i:")
            .replace("(?^:", "(?:")
            .replace("\\0", "\\x00");
        let body = body.strip_prefix('^').unwrap_or(&body);
        let body = body.strip_suffix('$').unwrap_or(body);
        let prefix = if flags.contains('i') { "(?i)" } else { "" };
        let compiled = Regex::new(&format!("{prefix}^{body}$")).ok();
        cache.insert(key, compiled.clone());
        compiled
    }
}

/// Top-level type check, as `PVE::JSONSchema::check_type` (strings from forms).
fn check_type(ty: &str, value: &mut Value) -> Result<(), String> {
    let got = |v: &Value| match v {
        Value::Array(_) => "ARRAY".to_string(),
        Value::Object(_) => "HASH".to_string(),
        other => scalar_text(other),
    };
    let fail = |v: &Value| Err(format!("type check ('{ty}') failed - got '{}'", got(v)));
    match (ty, &*value) {
        (_, Value::Array(_) | Value::Object(_)) if ty != "object" => fail(value),
        ("string", _) => Ok(()),
        ("boolean", Value::Bool(b)) => {
            *value = Value::String(if *b { "1" } else { "0" }.into());
            Ok(())
        }
        ("boolean", v) if matches!(scalar_text(v).as_str(), "1" | "0") => Ok(()),
        ("integer", v) if is_integer(&scalar_text(v)) => Ok(()),
        ("number", v)
            if scalar_text(v).parse::<f64>().is_ok()
                && !scalar_text(v).contains(char::is_alphabetic) =>
        {
            Ok(())
        }
        ("null", Value::Null) => Ok(()),
        ("object", Value::Object(_)) => Ok(()),
        _ => fail(value),
    }
}

fn is_integer(s: &str) -> bool {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
}

/// `-list` split: on NUL if present, else on `,`, `;` and whitespace; empties dropped.
pub fn split_list(text: &str) -> Vec<String> {
    let parts: Vec<&str> = if text.contains('\0') {
        text.split('\0').collect()
    } else {
        text.split(|c: char| c == ',' || c == ';' || c.is_whitespace())
            .collect()
    };
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn num(v: &Value) -> String {
    scalar_text(v)
}

fn is_true(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_i64() == Some(1),
        Value::String(s) => s == "1",
        _ => false,
    }
}
