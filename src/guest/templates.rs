//! The guest's templates (templates/guest/), embedded, in their own strict environment: a
//! typo in a variable is an error, never an empty line in a unit file.

use crate::templates::TemplateError;
use minijinja::{Environment, UndefinedBehavior};
use std::sync::LazyLock;

pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "guest/debian-components.sources.j2",
        include_str!("../../templates/guest/debian-components.sources.j2"),
    ),
    (
        "guest/apt-source.list.j2",
        include_str!("../../templates/guest/apt-source.list.j2"),
    ),
    (
        "guest/apt-pin.pref.j2",
        include_str!("../../templates/guest/apt-pin.pref.j2"),
    ),
    (
        "guest/nouveau-blacklist.conf.j2",
        include_str!("../../templates/guest/nouveau-blacklist.conf.j2"),
    ),
    (
        "guest/triton.service.j2",
        include_str!("../../templates/guest/triton.service.j2"),
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
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .expect("embedded templates parse");
    }
    env
});

pub fn render(name: &str, context: minijinja::Value) -> Result<String, TemplateError> {
    ENV.get_template(name)
        .and_then(|t| t.render(context))
        .map_err(|source| TemplateError {
            name: name.to_string(),
            source,
        })
}

pub fn names() -> impl Iterator<Item = &'static str> {
    TEMPLATES.iter().map(|(n, _)| *n)
}
