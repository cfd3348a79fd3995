//! Module configuration: modprobe.d directives, modules-load lists, and the kernel command line
//! as /etc/kernel/cmdline and GRUB's defaults configure it.

use serde::Serialize;

/// Kernel module names treat `-` and `_` alike; compare them in one spelling.
pub fn module_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Loaded modules from `/proc/modules` or `lsmod` (the first word of each line counts), in
/// their order and one spelling. lsmod's `Module Size Used by` header is not a module.
pub fn loaded_modules(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|m| *m != "Module")
        .map(module_name)
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Directive {
    Options {
        module: String,
        params: Vec<(String, String)>,
    },
    Softdep {
        module: String,
        pre: Vec<String>,
        post: Vec<String>,
    },
    Blacklist {
        module: String,
    },
    Install {
        module: String,
        command: String,
    },
    Other {
        text: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Located<T> {
    pub file: String,
    pub line: usize,
    pub item: T,
}

/// Logical lines of a config file: comments dropped, `\` continuations joined, with the line
/// number where each starts.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        let line = raw.trim_end();
        if let Some(body) = line.strip_suffix('\\') {
            acc.push_str(body);
            acc.push(' ');
            pending = Some((start, acc));
            continue;
        }
        acc.push_str(line);
        let trimmed = acc.trim();
        if !trimmed.is_empty() && !trimmed.starts_with('#') {
            out.push((start, trimmed.to_string()));
        }
    }
    if let Some((start, acc)) = pending
        && !acc.trim().is_empty()
    {
        out.push((start, acc.trim().to_string()));
    }
    out
}

pub fn parse_modprobe(file: &str, text: &str) -> Vec<Located<Directive>> {
    logical_lines(text)
        .into_iter()
        .map(|(line, l)| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let item = match words.as_slice() {
                ["options", module, params @ ..] => Directive::Options {
                    module: module_name(module),
                    params: params
                        .iter()
                        .map(|p| match p.split_once('=') {
                            Some((k, v)) => (k.to_string(), v.trim_matches('"').to_string()),
                            None => (p.to_string(), String::new()),
                        })
                        .collect(),
                },
                ["softdep", module, rest @ ..] => {
                    let (mut pre, mut post) = (Vec::new(), Vec::new());
                    let mut into_pre = true;
                    for w in rest {
                        match *w {
                            "pre:" => into_pre = true,
                            "post:" => into_pre = false,
                            m if into_pre => pre.push(module_name(m)),
                            m => post.push(module_name(m)),
                        }
                    }
                    Directive::Softdep {
                        module: module_name(module),
                        pre,
                        post,
                    }
                }
                ["blacklist", module] => Directive::Blacklist {
                    module: module_name(module),
                },
                ["install", module, command @ ..] => Directive::Install {
                    module: module_name(module),
                    command: command.join(" "),
                },
                _ => Directive::Other { text: l.clone() },
            };
            Located {
                file: file.to_string(),
                line,
                item,
            }
        })
        .collect()
}

/// A modules-load list (/etc/modules, modules-load.d, /etc/initramfs-tools/modules): one module
/// per line, `#` or `;` comments, optional parameters after the name.
pub fn parse_module_list(file: &str, text: &str) -> Vec<Located<String>> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
                return None;
            }
            let name = l.split_whitespace().next()?;
            Some(Located {
                file: file.to_string(),
                line: i + 1,
                item: module_name(name),
            })
        })
        .collect()
}

/// Words of a kernel command line.
pub fn cmdline_tokens(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// The key of a cmdline token: `intel_iommu` for `intel_iommu=on`.
pub fn token_key(token: &str) -> &str {
    token.split_once('=').map(|(k, _)| k).unwrap_or(token)
}

/// Kernel parameters that GRUB_CMDLINE_LINUX and GRUB_CMDLINE_LINUX_DEFAULT set in one GRUB
/// defaults file, with the line each comes from. Variable references are left out.
pub fn grub_cmdline_tokens(file: &str, text: &str) -> Vec<Located<String>> {
    let mut out = Vec::new();
    for (line, l) in logical_lines(text) {
        let l = l.strip_prefix("export ").unwrap_or(&l);
        let Some((key, value)) = l.split_once('=') else {
            continue;
        };
        if key != "GRUB_CMDLINE_LINUX" && key != "GRUB_CMDLINE_LINUX_DEFAULT" {
            continue;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        for tok in value.split_whitespace().filter(|t| !t.starts_with('$')) {
            out.push(Located {
                file: file.to_string(),
                line,
                item: tok.to_string(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modprobe_directives_with_continuations() {
        let text = "# vfio\noptions vfio-pci ids=10de:1b80,10de:10f0 disable_vga=1\nsoftdep nouveau pre: vfio-pci\nblacklist nvidia\ninstall foo /bin/true \\\n  --quiet\n";
        let d = parse_modprobe("/etc/modprobe.d/vfio.conf", text);
        assert_eq!(d.len(), 4);
        assert_eq!(d[0].line, 2);
        assert_eq!(
            d[0].item,
            Directive::Options {
                module: "vfio_pci".into(),
                params: vec![
                    ("ids".into(), "10de:1b80,10de:10f0".into()),
                    ("disable_vga".into(), "1".into())
                ]
            }
        );
        assert_eq!(
            d[1].item,
            Directive::Softdep {
                module: "nouveau".into(),
                pre: vec!["vfio_pci".into()],
                post: vec![]
            }
        );
        assert_eq!(
            d[2].item,
            Directive::Blacklist {
                module: "nvidia".into()
            }
        );
        assert_eq!(
            d[3].item,
            Directive::Install {
                module: "foo".into(),
                command: "/bin/true --quiet".into()
            }
        );
    }

    #[test]
    fn module_lists_and_grub_defaults() {
        let m = parse_module_list(
            "/etc/modules",
            "# comment\nvfio\n\nvfio_iommu_type1\nvfio-pci ids=1\n",
        );
        assert_eq!(
            m.iter().map(|x| x.item.as_str()).collect::<Vec<_>>(),
            vec!["vfio", "vfio_iommu_type1", "vfio_pci"]
        );
        assert_eq!(m[2].line, 5);
        let g = grub_cmdline_tokens(
            "/etc/default/grub",
            "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet intel_iommu=on\"\nGRUB_CMDLINE_LINUX=\"${GRUB_CMDLINE_LINUX} console=ttyS0\"\n",
        );
        assert_eq!(
            g.iter().map(|x| x.item.as_str()).collect::<Vec<_>>(),
            vec!["quiet", "intel_iommu=on", "console=ttyS0"]
        );
        assert_eq!(g[1].line, 2);
        assert_eq!(token_key("intel_iommu=on"), "intel_iommu");
    }
}
