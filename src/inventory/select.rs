//! `--limit`: the nodes a command acts on, in the part of Ansible's pattern syntax admins
//! use: `a,b` (either), `pve-*` (a glob over node and group names), `gpu_nodes` (a group's
//! members), `!osm45` (but not), `&gpu_nodes` (and also in). A term that matches nothing is an
//! error, never an empty or a wider selection: a mistyped `!osm54` must not let osm45 through.

use super::{Inventory, InventoryError};
use std::collections::BTreeSet;

/// The nodes `pattern` names, in the inventory's order; every node when there is none.
pub fn select<'a>(
    inv: &'a Inventory,
    pattern: Option<&str>,
) -> Result<Vec<&'a str>, InventoryError> {
    let all: BTreeSet<&str> = inv.nodes.keys().map(String::as_str).collect();
    let Some(pattern) = pattern else {
        return Ok(all.into_iter().collect());
    };
    let mut wanted: Option<BTreeSet<&str>> = None;
    let mut and: Vec<BTreeSet<&str>> = Vec::new();
    let mut not: BTreeSet<&str> = BTreeSet::new();
    for raw in pattern.split(',') {
        let term = raw.trim();
        if term.is_empty() {
            continue;
        }
        if let Some(rest) = term.strip_prefix('!') {
            not.extend(matching(inv, rest)?);
        } else if let Some(rest) = term.strip_prefix('&') {
            and.push(matching(inv, rest)?);
        } else {
            wanted
                .get_or_insert_with(BTreeSet::new)
                .extend(matching(inv, term)?);
        }
    }
    let mut chosen = wanted.unwrap_or(all);
    for set in and {
        chosen.retain(|n| set.contains(n));
    }
    chosen.retain(|n| !not.contains(n));
    if chosen.is_empty() {
        return Err(InventoryError::EmptySelection {
            pattern: pattern.to_string(),
            path: inv.path.clone(),
        });
    }
    Ok(chosen.into_iter().collect())
}

/// The nodes one term names: `all`, a node, a group's members, or those of every node and group
/// a glob matches.
fn matching<'a>(inv: &'a Inventory, term: &str) -> Result<BTreeSet<&'a str>, InventoryError> {
    let mut out = BTreeSet::new();
    if term == "all" {
        out.extend(inv.nodes.keys().map(String::as_str));
    }
    for name in inv.nodes.keys() {
        if glob(term, name) {
            out.insert(name.as_str());
        }
    }
    for (group, members) in &inv.groups {
        if glob(term, group) {
            for m in members {
                if let Some((name, _)) = inv.nodes.get_key_value(m) {
                    out.insert(name.as_str());
                }
            }
        }
    }
    if out.is_empty() {
        return Err(InventoryError::NoMatch {
            term: term.to_string(),
            path: inv.path.clone(),
            known: known(inv),
        });
    }
    Ok(out)
}

fn known(inv: &Inventory) -> String {
    let nodes: Vec<&str> = inv.nodes.keys().map(String::as_str).collect();
    let mut text = nodes.join(", ");
    if !inv.groups.is_empty() {
        let groups: Vec<&str> = inv.groups.keys().map(String::as_str).collect();
        text.push_str(&format!("; groups: {}", groups.join(", ")));
    }
    text
}

/// Shell-style matching of a whole name: `*` any run of characters, `?` any one; the rest
/// literally (without either, it is an exact name).
fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // the classic two-pointer match with one backtrack point for the last `*`
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn inv() -> Inventory {
        Inventory::parse(
            Path::new("inv.toml"),
            r#"
[groups.gpu_nodes]
members = ["osm45", "pve-b"]
[groups.lab]
members = ["pve-a"]
[nodes.osm45]
ssh = "root@osm45"
[nodes.pve-a]
ssh = "root@pve-a"
[nodes.pve-b]
ssh = "root@pve-b"
[nodes.pve-c]
ssh = "root@pve-c"
"#,
        )
        .unwrap()
    }

    fn names(pattern: &str) -> Result<Vec<String>, String> {
        let inv = inv();
        select(&inv, Some(pattern))
            .map(|v| v.into_iter().map(String::from).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_terms_admins_use() {
        assert_eq!(names("osm45").unwrap(), ["osm45"]);
        assert_eq!(names("osm45,pve-a").unwrap(), ["osm45", "pve-a"]);
        assert_eq!(names("pve-*").unwrap(), ["pve-a", "pve-b", "pve-c"]);
        assert_eq!(names("pve-?").unwrap(), ["pve-a", "pve-b", "pve-c"]);
        assert_eq!(names("gpu_nodes").unwrap(), ["osm45", "pve-b"]);
        assert_eq!(names("all,!osm45").unwrap(), ["pve-a", "pve-b", "pve-c"]);
        assert_eq!(names("!osm45").unwrap(), ["pve-a", "pve-b", "pve-c"]);
        assert_eq!(names("pve-*,&gpu_nodes").unwrap(), ["pve-b"]);
        assert_eq!(names("gpu_nodes,lab,!pve-b").unwrap(), ["osm45", "pve-a"]);
        assert_eq!(names("*").unwrap().len(), 4);
        let all = inv();
        assert_eq!(select(&all, None).unwrap().len(), 4);
    }

    #[test]
    fn a_term_that_matches_nothing_is_an_error_not_a_wider_selection() {
        let err = names("all,!osm54").unwrap_err();
        assert!(err.contains("`osm54`"), "{err}");
        assert!(
            err.contains("(it has: osm45, pve-a, pve-b, pve-c; groups: gpu_nodes, lab)"),
            "{err}"
        );
        assert!(names("pve-x*").is_err());
        let err = names("osm45,!osm45").unwrap_err();
        assert!(err.contains("selects no node"), "{err}");
    }

    #[test]
    fn globs_match_whole_names() {
        assert!(glob("pve-*", "pve-a"));
        assert!(!glob("pve-*", "xpve-a"));
        assert!(glob("*-a", "pve-a"));
        assert!(glob("p*e*a", "pve-a"));
        assert!(!glob("p*e*b", "pve-a"));
        assert!(glob("a*b*c", "aXbYbc"));
        assert!(!glob("osm4", "osm45"));
    }
}
