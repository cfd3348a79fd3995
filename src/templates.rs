//! Every file pvegpu writes is rendered from a minijinja template in templates/, embedded in
//! the binary. Undefined variables are errors, so a typo cannot render an empty line.

use minijinja::{Environment, UndefinedBehavior};
use std::sync::LazyLock;

const TEMPLATES: &[(&str, &str)] = &[
    (
        "host/modules-load-vfio.conf.j2",
        include_str!("../templates/host/modules-load-vfio.conf.j2"),
    ),
    (
        "host/initramfs-modules.j2",
        include_str!("../templates/host/initramfs-modules.j2"),
    ),
    (
        "host/modprobe-vfio.conf.j2",
        include_str!("../templates/host/modprobe-vfio.conf.j2"),
    ),
    (
        "host/modprobe-blacklist.conf.j2",
        include_str!("../templates/host/modprobe-blacklist.conf.j2"),
    ),
    (
        "host/vfio-pci-override.sh.j2",
        include_str!("../templates/host/vfio-pci-override.sh.j2"),
    ),
    (
        "host/initramfs-hook.j2",
        include_str!("../templates/host/initramfs-hook.j2"),
    ),
    (
        "host/grub-pvegpu.cfg.j2",
        include_str!("../templates/host/grub-pvegpu.cfg.j2"),
    ),
    (
        "host/kernel-cmdline.j2",
        include_str!("../templates/host/kernel-cmdline.j2"),
    ),
    (
        "guest/debian-components.sources.j2",
        include_str!("../templates/guest/debian-components.sources.j2"),
    ),
    (
        "guest/apt-source.list.j2",
        include_str!("../templates/guest/apt-source.list.j2"),
    ),
    (
        "guest/apt-pin.pref.j2",
        include_str!("../templates/guest/apt-pin.pref.j2"),
    ),
    (
        "guest/nouveau-blacklist.conf.j2",
        include_str!("../templates/guest/nouveau-blacklist.conf.j2"),
    ),
    (
        "guest/triton.service.j2",
        include_str!("../templates/guest/triton.service.j2"),
    ),
];

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("static syntax config"),
    );
    env.add_filter("systemd_arg", systemd_arg);
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .expect("embedded templates parse");
    }
    env
});

#[derive(Debug, thiserror::Error)]
#[error("cannot render template {name}")]
pub struct TemplateError {
    pub name: String,
    #[source]
    pub source: minijinja::Error,
}

pub fn render(name: &str, context: minijinja::Value) -> Result<String, TemplateError> {
    ENV.get_template(name)
        .and_then(|t| t.render(context))
        .map_err(|source| TemplateError {
            name: name.to_string(),
            source,
        })
}

/// One argument of a systemd unit's command line, as systemd.service(5) reads it: `%` would
/// start a specifier and `$` a variable, so both are doubled; an argument with a space, a
/// quote or a backslash is double-quoted with C escapes. A control character cannot be said
/// in a unit line at all: an error, not a guess.
fn systemd_arg(value: String) -> Result<String, minijinja::Error> {
    if value.chars().any(char::is_control) {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("{value:?} holds a control character, which a systemd unit cannot carry"),
        ));
    }
    let doubled = value.replace('%', "%%").replace('$', "$$");
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._:+,@=-%$".contains(c);
    if !doubled.is_empty() && doubled.chars().all(plain) {
        return Ok(doubled);
    }
    Ok(format!(
        "\"{}\"",
        doubled.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

pub fn names() -> impl Iterator<Item = &'static str> {
    TEMPLATES.iter().map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_args_keep_their_meaning() {
        assert_eq!(
            systemd_arg("/srv/models:/models:ro".into()).unwrap(),
            "/srv/models:/models:ro"
        );
        assert_eq!(
            systemd_arg("/srv/100%/$HOME:/models:ro".into()).unwrap(),
            "/srv/100%%/$$HOME:/models:ro"
        );
        assert_eq!(
            systemd_arg("/srv/my \"models\\:/models:ro".into()).unwrap(),
            r#""/srv/my \"models\\:/models:ro""#
        );
        assert!(systemd_arg("/srv/a\nExecStartPre=/bin/evil".into()).is_err());
    }

    #[test]
    fn strict_undefined_is_an_error() {
        let err = render("host/modules-load-vfio.conf.j2", minijinja::context! {}).unwrap_err();
        assert!(err.to_string().contains("modules-load-vfio"));
    }

    #[test]
    fn every_template_file_is_embedded() {
        // Every minijinja template (`.j2`); the CUDA probe's C source beside them is shipped
        // as is by src/verify/runtime.rs.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut on_disk = Vec::new();
        for sub in std::fs::read_dir(&dir).unwrap() {
            let sub = sub.unwrap().path();
            for f in std::fs::read_dir(&sub).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_none_or(|e| e != "j2") {
                    continue;
                }
                on_disk.push(f.strip_prefix(&dir).unwrap().to_string_lossy().into_owned());
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = names().map(str::to_string).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }
}
