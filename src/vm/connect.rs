//! From the inventory's `[api]` table to a logged-in API client. Secrets come from the
//! environment or from a file that only its owner can read; they are held in `SecretString`
//! and never printed.

use crate::inventory::vm::{ApiSettings, PASSWORD_ENV, TOKEN_SECRET_ENV};
use crate::pve::{
    ApiToken, ClientOptions, Credentials, Fingerprint, PveClient, PveError, TlsTrust,
};
use secrecy::SecretString;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{inventory}: node `{node}`: {message}")]
    Settings {
        inventory: PathBuf,
        node: String,
        message: String,
    },
    #[error(transparent)]
    Api(#[from] PveError),
}

impl crate::core::error::Hint for ConnectError {
    fn hint(&self) -> Option<String> {
        match self {
            ConnectError::Settings { .. } => Some(format!(
                "an [api] table needs `url` and either `token = \"USER@REALM!NAME\"` (secret in ${TOKEN_SECRET_ENV} or `token_secret_file`) or `user = \"root@pam\"` (password in ${PASSWORD_ENV} or `password_file`); see inventories/osm45.toml"
            )),
            ConnectError::Api(e) => crate::core::error::Hint::hint(e),
        }
    }
}

fn settings_error(inventory: &Path, node: &str, message: String) -> ConnectError {
    ConnectError::Settings {
        inventory: inventory.to_path_buf(),
        node: node.to_string(),
        message,
    }
}

/// Read a secret file, refusing one that others can read: a leaked token opens the cluster.
fn secret_file(inventory: &Path, node: &str, path: &Path) -> Result<SecretString, ConnectError> {
    use std::os::unix::fs::PermissionsExt;
    let unreadable = |e: &dyn std::fmt::Display| {
        settings_error(
            inventory,
            node,
            format!("cannot read the secret file {}: {e}", path.display()),
        )
    };
    let meta = std::fs::metadata(path).map_err(|e| unreadable(&e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(settings_error(
            inventory,
            node,
            format!(
                "the secret file {} has mode {mode:o}, readable by others; run `chmod 600 {}`",
                path.display(),
                path.display()
            ),
        ));
    }
    // a FIFO or a device is refused before it is opened: reading one could block forever
    let text = crate::core::input::read_text(path).map_err(|e| unreadable(&e))?;
    Ok(SecretString::from(text.trim().to_string()))
}

fn from_env(name: &str) -> Option<SecretString> {
    std::env::var(name)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(|s| SecretString::from(s.trim().to_string()))
}

/// A secret from its file, else from the environment variable `env`; `missing` says what to
/// set when neither gives one.
fn secret(
    inventory: &Path,
    node: &str,
    (file, env): (&Option<PathBuf>, &str),
    missing: impl FnOnce() -> String,
) -> Result<SecretString, ConnectError> {
    match (file, from_env(env)) {
        (Some(f), _) => secret_file(inventory, node, f),
        (None, Some(s)) => Ok(s),
        (None, None) => Err(settings_error(inventory, node, missing())),
    }
}

/// The trust mode the settings ask for; a bad fingerprint is an inventory error.
pub fn trust(inventory: &Path, node: &str, api: &ApiSettings) -> Result<TlsTrust, ConnectError> {
    match (&api.fingerprint, &api.ca_file) {
        (Some(_), Some(_)) => Err(settings_error(
            inventory,
            node,
            "[api] sets both `fingerprint` and `ca_file`; keep one".into(),
        )),
        (Some(fp), None) => fp
            .parse::<Fingerprint>()
            .map(TlsTrust::Pinned)
            .map_err(|e| settings_error(inventory, node, e.to_string())),
        (None, Some(ca)) => Ok(TlsTrust::CaFile(ca.clone())),
        (None, None) => Ok(TlsTrust::SystemRoots),
    }
}

/// A client for one node, logged in when the settings name a user.
pub async fn client(
    inventory: &Path,
    node: &str,
    api: &ApiSettings,
) -> Result<PveClient, ConnectError> {
    let trust = trust(inventory, node, api)?;
    let opts = ClientOptions::new(api.url.clone(), trust);
    match (&api.token, &api.user) {
        (Some(_), Some(_)) => Err(settings_error(
            inventory,
            node,
            "[api] sets both `token` and `user`; keep one".into(),
        )),
        (None, None) => Err(settings_error(
            inventory,
            node,
            "[api] names no credentials".into(),
        )),
        (Some(token), None) => {
            let source = (&api.token_secret_file, TOKEN_SECRET_ENV);
            let secret = secret(inventory, node, source, || {
                format!(
                    "no secret for API token {token}: set ${TOKEN_SECRET_ENV} or `token_secret_file`"
                )
            })?;
            let t = ApiToken::new(token, secret)?;
            Ok(PveClient::new(opts.credentials(Credentials::Token(t)))?)
        }
        (None, Some(user)) => {
            let source = (&api.password_file, PASSWORD_ENV);
            let password = secret(inventory, node, source, || {
                format!("no password for {user}: set ${PASSWORD_ENV} or `password_file`")
            })?;
            let mut c = PveClient::new(opts)?;
            c.login(user, &password).await?;
            Ok(c)
        }
    }
}

/// The command that prints the node certificate's fingerprint (the custom certificate
/// pveproxy serves when one is installed, else the cluster-signed one).
pub const FINGERPRINT_COMMAND: &str = "for f in /etc/pve/local/pveproxy-ssl.pem /etc/pve/local/pve-ssl.pem; do if [ -r \"$f\" ]; then openssl x509 -in \"$f\" -noout -fingerprint -sha256; exit $?; fi; done; echo 'no /etc/pve/local/pve-ssl.pem' >&2; exit 1";

/// `sha256 Fingerprint=AB:CD:...` as openssl prints it.
pub fn parse_fingerprint_output(out: &str) -> Result<Fingerprint, PveError> {
    let line = out
        .lines()
        .find(|l| l.contains("Fingerprint="))
        .ok_or_else(|| PveError::Config(format!("no fingerprint in the output: {out:?}")))?;
    line.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_output_parses() {
        let fp = parse_fingerprint_output(
            "sha256 Fingerprint=5B:41:0E:45:9A:1E:42:43:B5:6C:8E:6B:AA:0D:6E:C1:AE:6D:6E:A5:86:3E:43:0A:73:5E:4D:DD:FD:F8:27:3C\n",
        )
        .unwrap();
        assert!(fp.to_string().starts_with("5B:41:0E"));
        assert!(parse_fingerprint_output("unable to load certificate\n").is_err());
    }

    #[test]
    fn secret_files_readable_by_others_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "0b9c-secret\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = secret_file(Path::new("inv.toml"), "osm45", &f)
            .unwrap_err()
            .to_string();
        assert!(e.contains("chmod 600") && !e.contains("0b9c-secret"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(
            secret_file(Path::new("inv.toml"), "osm45", &f)
                .unwrap()
                .expose_secret(),
            "0b9c-secret"
        );
    }
}
