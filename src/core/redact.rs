//! What logs may not show. `-vv` logs request bodies, replies and remote scripts; before any of
//! it is written, the values of secret-bearing fields are replaced: the API token header, a
//! login's password, the ticket and CSRF token a login returns.

use regex::Regex;
use std::sync::LazyLock;

const HIDDEN: &str = "<redacted>";

static SECRETS: LazyLock<[Regex; 3]> = LazyLock::new(|| {
    [
        // PVEAPIToken=USER@REALM!NAME=SECRET (a header, or text that quotes one)
        Regex::new(r"(PVEAPIToken=[^=\s]+=)[^\s,;&]+").expect("fixed regex"),
        // form bodies: password=...&, ticket=..., CSRFPreventionToken=...
        Regex::new(r"(?i)((?:^|[&?\s])(?:password|new-password|ticket|csrfpreventiontoken|token_secret)=)[^&\s]*")
            .expect("fixed regex"),
        // JSON replies: "ticket":"...", "CSRFPreventionToken":"...", "password":"..."
        Regex::new(r#"(?i)("(?:password|ticket|csrfpreventiontoken|token_secret|value)"\s*:\s*")[^"]*"#)
            .expect("fixed regex"),
    ]
});

/// What a log may show of text a node, guest or API sent: secrets redacted, terminal
/// controls made visible.
pub fn for_log(text: &str) -> String {
    crate::core::visible::visible(&redact(text)).into_owned()
}

/// `text` with every secret value replaced by `<redacted>`.
pub fn redact(text: &str) -> String {
    SECRETS.iter().fold(text.to_string(), |t, re| {
        re.replace_all(&t, format!("${{1}}{HIDDEN}").as_str())
            .into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_password_ticket_and_csrf_are_hidden() {
        let t = redact("Authorization: PVEAPIToken=root@pam!pvegpu=1234-abcd");
        assert_eq!(t, "Authorization: PVEAPIToken=root@pam!pvegpu=<redacted>");
        let t = redact("username=root%40pam&password=s3cr%C3%A9t&realm=pam");
        assert_eq!(t, "username=root%40pam&password=<redacted>&realm=pam");
        let t = redact(
            r#"{"data":{"ticket":"PVE:root@pam:ABC::sig","CSRFPreventionToken":"123:xyz","username":"root@pam"}}"#,
        );
        assert!(
            !t.contains("ABC") && !t.contains("xyz") && t.contains("root@pam"),
            "{t}"
        );
    }
}
