//! TLS trust: system roots, a CA file, or the node certificate's SHA-256 fingerprint (the
//! `AB:CD:...` form the Proxmox GUI shows). Never "accept anything": the pin verifier still
//! checks the handshake signatures with the pinned certificate's key.

use super::error::PveError;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// A SHA-256 certificate fingerprint.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The SHA-256 of a certificate's DER, as `openssl x509 -fingerprint -sha256` computes it.
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }
}

impl FromStr for Fingerprint {
    type Err = PveError;
    /// `AB:CD:...` (32 colon-separated pairs, either case), or 64 hex digits;
    /// an `sha256 Fingerprint=` prefix as openssl prints it is accepted.
    fn from_str(s: &str) -> Result<Self, PveError> {
        let t = s.trim();
        let t = t.rsplit_once('=').map_or(t, |(_, v)| v).trim();
        let hex: String = t.chars().filter(|c| *c != ':').collect();
        let bad = || {
            PveError::Config(format!(
                "TLS fingerprint {s:?} is not a SHA-256 fingerprint (32 hex pairs like AB:CD:..., as the Proxmox GUI shows under the node's Certificates)"
            ))
        };
        if hex.len() != 64
            || (t.contains(':') && t.split(':').any(|p| p.len() != 2))
            || !hex.chars().all(|c| c.is_ascii_hexdigit())
        {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for Fingerprint {
    /// Upper-case colon form, as the GUI shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// How the node's certificate is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsTrust {
    /// The operating system's roots (nodes with an ACME certificate).
    SystemRoots,
    /// A CA file in PEM, e.g. a copy of the cluster's `/etc/pve/pve-root-ca.pem`.
    CaFile(PathBuf),
    /// Exactly this leaf certificate; host names are not checked (the pin names the cert).
    Pinned(Fingerprint),
}

impl fmt::Display for TlsTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsTrust::SystemRoots => f.write_str("the system roots"),
            TlsTrust::CaFile(p) => write!(f, "the CA file {}", p.display()),
            TlsTrust::Pinned(fp) => write!(f, "the pinned fingerprint {fp}"),
        }
    }
}

/// What the verifier saw when it refused a certificate; read by the client to build a
/// precise error (the reqwest error chain only carries text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsRefusal {
    Mismatch {
        expected: Fingerprint,
        actual: Fingerprint,
    },
    Untrusted {
        actual: Fingerprint,
        detail: String,
    },
}

/// Shared slot for the last refusal.
#[derive(Debug, Clone, Default)]
pub struct TlsObserver(Arc<Mutex<Option<TlsRefusal>>>);

impl TlsObserver {
    fn record(&self, r: TlsRefusal) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some(r);
        }
    }
    /// The last refusal, cleared.
    pub fn take(&self) -> Option<TlsRefusal> {
        self.0.lock().ok().and_then(|mut g| g.take())
    }
}

/// The ring provider, which the whole client uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How a verifier judges the leaf certificate; handshake signatures are always checked with
/// the presented certificate's key.
#[derive(Debug)]
enum CertCheck {
    /// Exactly this certificate.
    Pinned(Fingerprint),
    /// A chain to these roots, for the server's name (WebPKI).
    Chain(Arc<WebPkiServerVerifier>),
}

/// The verifier for every trust mode. A refusal is recorded in `observer` with the presented
/// certificate's fingerprint, so that the error can name it (and offer it as a pin).
#[derive(Debug)]
struct Verifier {
    check: CertCheck,
    provider: Arc<CryptoProvider>,
    observer: TlsObserver,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual = Fingerprint::of_der(end_entity.as_ref());
        match &self.check {
            CertCheck::Pinned(expected) if actual == *expected => {
                Ok(ServerCertVerified::assertion())
            }
            CertCheck::Pinned(expected) => {
                self.observer.record(TlsRefusal::Mismatch {
                    expected: *expected,
                    actual,
                });
                Err(rustls::Error::General(format!(
                    "certificate fingerprint mismatch: expected {expected}, got {actual}"
                )))
            }
            CertCheck::Chain(webpki) => webpki
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
                .inspect_err(|e| {
                    self.observer.record(TlsRefusal::Untrusted {
                        actual,
                        detail: e.to_string(),
                    })
                }),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn system_roots() -> Result<RootCertStore, PveError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(PveError::Config(format!(
            "no system root certificates found ({} errors); install ca-certificates, or give a CA file or a fingerprint",
            found.errors.len()
        )));
    }
    Ok(roots)
}

fn file_roots(path: &std::path::Path) -> Result<RootCertStore, PveError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| PveError::Config(format!("cannot read CA file {}: {e}", path.display())))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(PveError::Config(format!(
            "the CA file {} holds no usable certificate",
            path.display()
        )));
    }
    Ok(roots)
}

/// The rustls configuration for a trust mode; refusals are recorded in `observer`.
pub fn client_config(trust: &TlsTrust, observer: &TlsObserver) -> Result<ClientConfig, PveError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| PveError::Config(format!("TLS setup: {e}")))?;
    let check = match trust {
        TlsTrust::Pinned(fp) => CertCheck::Pinned(*fp),
        TlsTrust::SystemRoots | TlsTrust::CaFile(_) => {
            let roots = match trust {
                TlsTrust::CaFile(p) => file_roots(p)?,
                _ => system_roots()?,
            };
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| PveError::Config(format!("TLS setup: {e}")))?;
            CertCheck::Chain(webpki)
        }
    };
    let verifier = Arc::new(Verifier {
        check,
        provider,
        observer: observer.clone(),
    });
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_forms() {
        let gui = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";
        let fp: Fingerprint = gui.parse().unwrap();
        assert_eq!(fp.to_string(), gui);
        assert_eq!(fp.0[0], 0xAB);
        assert_eq!(gui.to_lowercase().parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(gui.replace(':', "").parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(
            format!("sha256 Fingerprint={gui}")
                .parse::<Fingerprint>()
                .unwrap(),
            fp
        );
        for bad in [
            "",
            "AB:CD",
            &gui[..gui.len() - 3],
            &gui.replace("AB:", "A:B"),
            &gui.replace("01", "0G"),
            // a SHA-1 fingerprint is refused
            "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01",
        ] {
            let e = bad.parse::<Fingerprint>().unwrap_err();
            assert!(e.to_string().contains("SHA-256"), "{bad}: {e}");
        }
    }

    #[test]
    fn fingerprint_of_der_is_sha256() {
        // sha256("abc")
        assert_eq!(
            Fingerprint::of_der(b"abc").to_string(),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e =
            client_config(&TlsTrust::CaFile(missing.clone()), &TlsObserver::default()).unwrap_err();
        assert!(e.to_string().contains("nope.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a pem\n").unwrap();
        let e = client_config(&TlsTrust::CaFile(empty), &TlsObserver::default()).unwrap_err();
        assert!(e.to_string().contains("no usable certificate"), "{e}");
    }
}
