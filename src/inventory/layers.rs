//! Shared settings: `[defaults]` for every node, `[groups.NAME]` (its `members` and any node
//! setting) for some, the node's own tables last, so the node's value wins. The layers are
//! merged table by table before a node is read, and every value keeps the span it was
//! written at, so an error names the line it came from, whichever layer that was.

use super::{InventoryError, Node, line_col};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;
use toml::de::{DeTable, DeValue, Deserializer};

/// The nodes as read, each with its layers merged in, and each group's members.
pub(super) struct Layered {
    pub nodes: BTreeMap<String, Node>,
    pub groups: BTreeMap<String, Vec<String>>,
}

type Table<'i> = DeTable<'i>;

/// A group as written: its members (with where each is named) and the settings it gives them.
struct Group<'i> {
    members: Vec<Spanned<String>>,
    settings: Table<'i>,
}

pub(super) fn read(path: &Path, text: &str) -> Result<Layered, InventoryError> {
    let err = |span: Range<usize>, message: String| located(path, text, span, message);
    let mut doc = DeTable::parse(text)
        .map_err(|e| toml_error(path, text, &e))?
        .into_inner();
    if let Some((key, _)) = doc
        .iter()
        .find(|(k, _)| !["defaults", "groups", "nodes"].contains(&k.get_ref().as_ref()))
    {
        return Err(err(
            key.span(),
            format!(
                "unknown table `{}`; an inventory has `[nodes.NAME]`, `[groups.NAME]` and `[defaults]`",
                key.get_ref()
            ),
        ));
    }
    let defaults = take_table(&mut doc, "defaults", &err)?.unwrap_or_default();
    let nodes = take_table(&mut doc, "nodes", &err)?.unwrap_or_default();
    let groups = read_groups(take_table(&mut doc, "groups", &err)?, &nodes, &err)?;
    let mut out = Layered {
        nodes: BTreeMap::new(),
        groups: groups
            .iter()
            .map(|(name, g)| {
                let members = g.members.iter().map(|m| m.get_ref().clone()).collect();
                (name.clone(), members)
            })
            .collect(),
    };
    for (key, value) in nodes {
        let name = key.get_ref().to_string();
        let span = value.span();
        let DeValue::Table(own) = value.into_inner() else {
            return Err(err(span, format!("`nodes.{name}` must be a table")));
        };
        let mut merged = defaults.clone();
        let mine: Vec<(&String, &Group)> = groups
            .iter()
            .filter(|(_, g)| g.members.iter().any(|m| *m.get_ref() == name))
            .collect();
        check_group_conflicts(&name, &mine, &own, text, &err)?;
        for (_, g) in &mine {
            merge(&mut merged, g.settings.clone());
        }
        merge(&mut merged, own);
        let node = Node::deserialize(Deserializer::from(Spanned::new(span, merged)))
            .map_err(|e| toml_error(path, text, &e))?;
        out.nodes.insert(name, node);
    }
    Ok(out)
}

/// `name`'s table removed from `doc`, or an error where it is something else.
fn take_table<'i>(
    doc: &mut Table<'i>,
    name: &str,
    err: &impl Fn(Range<usize>, String) -> InventoryError,
) -> Result<Option<Table<'i>>, InventoryError> {
    let Some(value) = doc.remove(name) else {
        return Ok(None);
    };
    let span = value.span();
    match value.into_inner() {
        DeValue::Table(t) => Ok(Some(t)),
        _ => Err(err(span, format!("`{name}` must be a table (`[{name}]`)"))),
    }
}

fn read_groups<'i>(
    table: Option<Table<'i>>,
    nodes: &Table<'i>,
    err: &impl Fn(Range<usize>, String) -> InventoryError,
) -> Result<BTreeMap<String, Group<'i>>, InventoryError> {
    let mut groups = BTreeMap::new();
    for (key, value) in table.unwrap_or_default() {
        let name = key.get_ref().to_string();
        if nodes.get(name.as_str()).is_some() {
            return Err(err(
                key.span(),
                format!(
                    "group `{name}` has the name of a node; `--limit {name}` could mean either, so give the group another name"
                ),
            ));
        }
        let span = value.span();
        let DeValue::Table(mut settings) = value.into_inner() else {
            return Err(err(
                span,
                format!("`groups.{name}` must be a table with `members = [\"node\", ...]`"),
            ));
        };
        let members = read_members(&name, settings.remove("members"), span, nodes, err)?;
        groups.insert(name, Group { members, settings });
    }
    Ok(groups)
}

fn read_members(
    group: &str,
    value: Option<Spanned<DeValue<'_>>>,
    group_span: Range<usize>,
    nodes: &Table<'_>,
    err: &impl Fn(Range<usize>, String) -> InventoryError,
) -> Result<Vec<Spanned<String>>, InventoryError> {
    let missing = || format!("group `{group}` needs `members = [\"node\", ...]`");
    let value = value.ok_or_else(|| err(group_span, missing()))?;
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        return Err(err(span, missing()));
    };
    let mut members = Vec::new();
    for item in items.iter() {
        let Some(member) = item.get_ref().as_str() else {
            return Err(err(item.span(), missing()));
        };
        if nodes.get(member).is_none() {
            let known: Vec<&str> = nodes.keys().map(|k| k.get_ref().as_ref()).collect();
            return Err(err(
                item.span(),
                format!(
                    "group `{group}`: no node `{member}` under [nodes] (it has: {})",
                    known.join(", ")
                ),
            ));
        }
        members.push(Spanned::new(item.span(), member.to_string()));
    }
    Ok(members)
}

/// Two groups of one node that set the same setting to different values, where the node
/// sets none itself: neither may silently win.
fn check_group_conflicts(
    node: &str,
    groups: &[(&String, &Group)],
    own: &Table<'_>,
    text: &str,
    err: &impl Fn(Range<usize>, String) -> InventoryError,
) -> Result<(), InventoryError> {
    let mut seen: BTreeMap<String, (&String, Range<usize>)> = BTreeMap::new();
    for (name, g) in groups {
        for (key, span) in leaves(&g.settings, "") {
            if is_set(own, &key) {
                continue;
            }
            match seen.get(&key) {
                Some((first, at)) if text[at.clone()].trim() != text[span.clone()].trim() => {
                    let (line, _) = line_col(text, at.start);
                    return Err(err(
                        span,
                        format!(
                            "node `{node}` is in groups `{first}` and `{name}`, which set `{key}` differently (the other at line {line}); set it under [nodes.{node}] to decide"
                        ),
                    ));
                }
                _ => {
                    seen.insert(key, (*name, span));
                }
            }
        }
    }
    Ok(())
}

/// Every value that is not a table, by its dotted path, with where it is written.
fn leaves(table: &Table<'_>, prefix: &str) -> Vec<(String, Range<usize>)> {
    let mut out = Vec::new();
    for (key, value) in table.iter() {
        let path = format!("{prefix}{}", key.get_ref());
        match value.get_ref() {
            DeValue::Table(inner) => out.extend(leaves(inner, &format!("{path}."))),
            _ => out.push((path, value.span())),
        }
    }
    out
}

fn is_set(table: &Table<'_>, dotted: &str) -> bool {
    let mut current = table;
    let mut parts = dotted.split('.').peekable();
    while let Some(part) = parts.next() {
        match (current.get(part).map(Spanned::get_ref), parts.peek()) {
            (Some(DeValue::Table(inner)), Some(_)) => current = inner,
            (Some(_), None) => return true,
            _ => return false,
        }
    }
    false
}

/// `over` laid on `base`: tables merge key by key, anything else (arrays too) replaces. A
/// merged table is reported where the most specific layer wrote it.
fn merge<'i>(base: &mut Table<'i>, over: Table<'i>) {
    for (key, value) in over {
        let span = value.span();
        let old = base.remove(key.get_ref().as_ref()).map(Spanned::into_inner);
        let merged = match (old, value.into_inner()) {
            (Some(DeValue::Table(mut old)), DeValue::Table(new)) => {
                merge(&mut old, new);
                DeValue::Table(old)
            }
            (_, new) => new,
        };
        base.insert(key, Spanned::new(span, merged));
    }
}

fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> InventoryError {
    located(
        path,
        text,
        e.span().unwrap_or(0..0),
        e.message().trim().to_string(),
    )
}

fn located(path: &Path, text: &str, span: Range<usize>, message: String) -> InventoryError {
    let (line, column) = line_col(text, span.start);
    InventoryError::Invalid {
        path: path.to_path_buf(),
        line,
        column,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Inventory;
    use std::path::Path;

    fn parse(text: &str) -> Result<Inventory, String> {
        Inventory::parse(Path::new("inv.toml"), text).map_err(|e| e.to_string())
    }

    const CLUSTER: &str = r#"[defaults]
ssh_config = "ssh/config"
[defaults.api]
token = "pvegpu@pve!plan"
url = "https://pve.example.org:8006"
[defaults.host]
iommu_pt = false

[groups.gpu_nodes]
members = ["osm45", "osm46"]
[groups.gpu_nodes.host]
accept = ["only_display"]

[nodes.osm45]
ssh = "root@osm45"
[nodes.osm45.api]
url = "https://osm45.example.org:8006"

[nodes.osm46]
ssh = "root@osm46"
[nodes.osm46.host]
accept = []

[nodes.other]
ssh = "root@other"
"#;

    #[test]
    fn defaults_then_groups_then_the_node_table_by_table() {
        let inv = parse(CLUSTER).unwrap();
        let (a, b, c) = (
            &inv.nodes["osm45"],
            &inv.nodes["osm46"],
            &inv.nodes["other"],
        );
        let api = a.api.as_ref().unwrap();
        // the node's url, the shared token: tables merge key by key
        assert_eq!(api.url, "https://osm45.example.org:8006");
        assert_eq!(api.token.as_deref(), Some("pvegpu@pve!plan"));
        assert_eq!(c.api.as_ref().unwrap().url, "https://pve.example.org:8006");
        assert!(!a.host.iommu_pt && !c.host.iommu_pt);
        assert_eq!(a.host.accept.len(), 1);
        // the node's own (empty) list wins over its group's
        assert!(b.host.accept.is_empty());
        assert!(c.host.accept.is_empty());
        assert!(a.ssh_config.as_ref().unwrap().ends_with("ssh/config"));
        assert_eq!(inv.groups["gpu_nodes"], ["osm45", "osm46"]);
    }

    #[test]
    fn errors_name_the_line_of_the_layer_that_wrote_the_value() {
        let err = parse(&CLUSTER.replace("iommu_pt = false", "iommu_pt = \"no\"")).unwrap_err();
        assert!(err.starts_with("inv.toml:7:12:"), "{err}");
        let err = parse(&CLUSTER.replace("accept = [\"only_display\"]", "acept = []")).unwrap_err();
        assert!(
            err.starts_with("inv.toml:12:1:") && err.contains("acept"),
            "{err}"
        );
        let err =
            parse(&CLUSTER.replace("\"osm45\", \"osm46\"", "\"osm45\", \"osm47\"")).unwrap_err();
        assert!(err.starts_with("inv.toml:10:21:"), "{err}");
        assert!(
            err.contains("no node `osm47`") && err.contains("osm45, osm46, other"),
            "{err}"
        );
        let err = parse(&CLUSTER.replace("groups.gpu_nodes", "groups.osm45")).unwrap_err();
        assert!(
            err.starts_with("inv.toml:9:") && err.contains("name of a node"),
            "{err}"
        );
        let err = parse(&CLUSTER.replace("[defaults]", "[default]")).unwrap_err();
        assert!(
            err.starts_with("inv.toml:1:") && err.contains("unknown table `default`"),
            "{err}"
        );
        let err = parse(&CLUSTER.replace("members = [\"osm45\", \"osm46\"]\n", "")).unwrap_err();
        assert!(err.contains("needs `members"), "{err}");
        let err = parse(&CLUSTER.replace("ssh = \"root@other\"\n", "")).unwrap_err();
        assert!(err.contains("missing field `ssh`"), "{err}");
        assert!(err.starts_with("inv.toml:2"), "{err}");
    }

    #[test]
    fn two_groups_that_disagree_stop_the_load_unless_the_node_decides() {
        let two = CLUSTER.replace(
            "[nodes.osm45]",
            "[groups.lab]\nmembers = [\"osm45\"]\n[groups.lab.host]\naccept = [\"boot_vga\"]\n\n[nodes.osm45]",
        );
        let err = parse(&two).unwrap_err();
        assert!(
            err.contains("groups `gpu_nodes` and `lab`") && err.contains("`host.accept`"),
            "{err}"
        );
        assert!(err.contains("other at line 12"), "{err}");
        let decided = two.replace(
            "[nodes.osm45.api]",
            "[nodes.osm45.host]\naccept = [\"boot_vga\"]\n[nodes.osm45.api]",
        );
        assert_eq!(parse(&decided).unwrap().nodes["osm45"].host.accept.len(), 1);
        // the same value twice is no conflict
        let same = two.replace("accept = [\"boot_vga\"]", "accept = [\"only_display\"]");
        assert!(parse(&same).is_ok());
    }

    #[test]
    fn a_value_from_a_group_fails_its_checks_at_the_group_line() {
        let text = r#"[groups.g]
members = ["a"]
[groups.g.vm]
name = "bad name"
memory_mib = 4096
cores = 2
[groups.g.vm.disk]
storage = "local"
size_gb = 10
[nodes.a]
ssh = "root@a"
"#;
        let err = parse(text).unwrap_err();
        assert!(
            err.starts_with("inv.toml:4:1:") && err.contains("DNS name"),
            "{err}"
        );
    }
}
