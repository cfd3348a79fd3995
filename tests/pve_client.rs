//! The real client over real HTTPS: a tiny TLS server on 127.0.0.1 with an rcgen
//! self-signed certificate answers like Proxmox does (status line reasons, empty 401s,
//! `errors` maps, tasks with UPIDs and logs).

use pvegpu::core::error::Hint;
use pvegpu::pve::{
    Api, ApiToken, ClientOptions, Credentials, Fingerprint, Params, PveClient, PveError, TlsTrust,
    Upid, WaitOptions,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const SECRET: &str = "8a3c1f4e-0b1d-4c2e-9f3a-5d6e7f8a9b0c";

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

type Handler = Arc<dyn Fn(&Seen) -> (u16, &'static str, String) + Send + Sync>;

struct Server {
    base: String,
    fingerprint: Fingerprint,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn serve(handler: Handler) -> Server {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let der: CertificateDer<'static> = ck.cert.der().clone();
    let fingerprint = Fingerprint::of_der(der.as_ref());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![der], key)
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, handler, seen) = (acceptor.clone(), handler.clone(), seen2.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let Ok(n) = tls.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let mut lines = head.split("\r\n");
                let mut first = lines.next().unwrap_or_default().split(' ');
                let method = first.next().unwrap_or_default().to_string();
                let target = first.next().unwrap_or_default().to_string();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(": "))
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let req = Seen {
                    method,
                    target,
                    headers,
                };
                seen.lock().unwrap().push(req.clone());
                let (code, reason, body) = handler(&req);
                let resp = format!(
                    "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Server {
        base: format!("https://127.0.0.1:{port}"),
        fingerprint,
        seen,
    }
}

fn token() -> Credentials {
    Credentials::Token(ApiToken::new("root@pam!pvegpu", SECRET.to_string().into()).unwrap())
}

fn client(s: &Server, trust: TlsTrust) -> PveClient {
    let mut o = ClientOptions::new(&s.base, trust).credentials(token());
    o.retries = 2;
    o.backoff = Duration::from_millis(10);
    PveClient::new(o).unwrap()
}

fn no_secret(e: &PveError) {
    let all = format!("{e} {e:?} {}", e.hint().unwrap_or_default());
    assert!(!all.contains(SECRET), "secret leaked: {all}");
}

#[derive(Deserialize)]
struct Version {
    version: String,
}

#[tokio::test]
async fn right_pin_connects_and_sends_the_token() {
    let s = serve(Arc::new(|_| {
        (
            200,
            "OK",
            r#"{"data":{"version":"9.1.9","release":"9.1","repoid":"ab"}}"#.into(),
        )
    }))
    .await;
    let c = client(&s, TlsTrust::Pinned(s.fingerprint));
    let v: Version = c.get("/version", &Params::new()).await.unwrap();
    assert_eq!(v.version, "9.1.9");
    let seen = s.seen.lock().unwrap();
    assert_eq!(seen[0].target, "/api2/json/version");
    let auth = seen[0]
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .unwrap();
    assert_eq!(auth.1, format!("PVEAPIToken=root@pam!pvegpu={SECRET}"));
    assert!(
        !format!("{c:?}").contains(SECRET),
        "client Debug leaks the secret"
    );
}

#[tokio::test]
async fn wrong_pin_fails_with_both_fingerprints() {
    let s = serve(Arc::new(|_| (200, "OK", r#"{"data":null}"#.into()))).await;
    let wrong = Fingerprint([0xAB; 32]);
    let c = client(&s, TlsTrust::Pinned(wrong));
    let e = c
        .get::<Option<String>>("/version", &Params::new())
        .await
        .unwrap_err();
    assert!(matches!(e, PveError::FingerprintMismatch { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&wrong.to_string()), "{msg}");
    assert!(msg.contains(&s.fingerprint.to_string()), "{msg}");
    assert!(e.hint().unwrap().contains(&s.fingerprint.to_string()));
    assert!(!e.may_retry(true));
    // Refused at the handshake: no request was ever read, and no retries were made.
    assert!(s.seen.lock().unwrap().is_empty());
    no_secret(&e);
}

#[tokio::test]
async fn system_roots_reject_the_self_signed_cert_with_a_hint_to_pin() {
    let s = serve(Arc::new(|_| (200, "OK", r#"{"data":null}"#.into()))).await;
    let c = client(&s, TlsTrust::SystemRoots);
    let e = c
        .get::<Option<String>>("/version", &Params::new())
        .await
        .unwrap_err();
    let PveError::UntrustedCertificate { fingerprint, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(
        fingerprint.as_deref(),
        Some(s.fingerprint.to_string().as_str())
    );
    let hint = e.hint().unwrap();
    // the line the hint tells the user to write must be one the inventory accepts
    let line = hint
        .split('`')
        .find(|part| part.starts_with("fingerprint = "))
        .unwrap_or_else(|| panic!("no `fingerprint = ...` line in: {hint}"));
    assert!(line.contains(&s.fingerprint.to_string()), "{hint}");
    let inventory = format!(
        "[nodes.n]\nssh = \"root@n\"\n[nodes.n.api]\nurl = \"https://n:8006\"\ntoken = \"root@pam!pvegpu\"\n{line}\n"
    );
    pvegpu::inventory::Inventory::parse(std::path::Path::new("pvegpu.toml"), &inventory)
        .unwrap_or_else(|e| {
            panic!("the hint's line is not a valid inventory key: {e}\n{inventory}")
        });
}

#[tokio::test]
async fn empty_401_is_an_auth_error_without_the_secret() {
    let s = serve(Arc::new(|_| (401, "Authentication failed!", String::new()))).await;
    let c = client(&s, TlsTrust::Pinned(s.fingerprint));
    let e = c
        .get::<Option<String>>("/nodes", &Params::new())
        .await
        .unwrap_err();
    let PveError::Auth { message, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(message, "Authentication failed!");
    assert!(e.hint().unwrap().contains("API token"));
    assert_eq!(s.seen.lock().unwrap().len(), 1, "a 401 is not retried");
    no_secret(&e);
}

#[tokio::test]
async fn parameter_errors_surface() {
    let s = serve(Arc::new(|_| {
        (
            400,
            "Parameter verification failed.",
            r#"{"data":null,"message":"Parameter verification failed.\n","errors":{"vmid":"invalid format - value does not look like a valid VM ID\n"}}"#.into(),
        )
    }))
    .await;
    let c = client(&s, TlsTrust::Pinned(s.fingerprint));
    let req = pvegpu::pve::ApiRequest::post(
        "/nodes/pve/qemu",
        &Params::new().int("vmid", 99).bool("onboot", true),
    );
    let e = c.call::<Option<String>>(&req).await.unwrap_err();
    let PveError::Api { status, errors, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(*status, 400);
    assert_eq!(
        errors["vmid"],
        "invalid format - value does not look like a valid VM ID"
    );
    assert!(e.to_string().contains("vmid: invalid format"), "{e}");
    let seen = s.seen.lock().unwrap();
    assert_eq!(seen[0].method, "POST");
    assert!(
        seen[0]
            .headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/x-www-form-urlencoded")
    );
}

#[tokio::test]
async fn a_500_with_errors_map_surfaces_them() {
    let s = serve(Arc::new(|_| {
        (500, "unable to create VM 201", r#"{"data":null,"message":"unable to create VM 201 - storage 'nvme-zfs' does not exist\n","errors":{"scsi0":"storage 'nvme-zfs' does not exist"}}"#.into())
    }))
    .await;
    let c = client(&s, TlsTrust::Pinned(s.fingerprint));
    let e = c
        .call::<Option<String>>(&pvegpu::pve::ApiRequest::post(
            "/nodes/pve/qemu",
            &Params::new(),
        ))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("500 unable to create VM 201 - storage 'nvme-zfs' does not exist"),
        "{msg}"
    );
    assert!(
        msg.contains("scsi0: storage 'nvme-zfs' does not exist"),
        "{msg}"
    );
}

#[tokio::test]
async fn unknown_node_596() {
    let s = serve(Arc::new(|_| {
        (596, "no such cluster node 'Proxmox'", String::new())
    }))
    .await;
    let c = client(&s, TlsTrust::Pinned(s.fingerprint));
    let e = c
        .get::<Option<String>>("/nodes/Proxmox/qemu", &Params::new())
        .await
        .unwrap_err();
    assert!(
        matches!(e, PveError::UnknownNode { ref node, .. } if node == "Proxmox"),
        "{e:?}"
    );
}

#[tokio::test]
async fn failed_task_surfaces_its_log() {
    const UPID: &str = "UPID:pve:0012ABCD:0A1B2C3D:66F1E2D3:qmstart:100:root@pam!pvegpu:";
    let polls = Arc::new(Mutex::new(0));
    let p = polls.clone();
    let s = serve(Arc::new(move |req| {
        if req.target.contains("/status/start") {
            return (200, "OK", format!(r#"{{"data":"{UPID}"}}"#));
        }
        if req.target.contains("/tasks/") && req.target.ends_with("/status") {
            let mut n = p.lock().unwrap();
            *n += 1;
            return if *n < 2 {
                (200, "OK", r#"{"data":{"status":"running","pid":"1223629","type":"qmstart"}}"#.into())
            } else {
                (200, "OK", r#"{"data":{"status":"stopped","exitstatus":"no PCI device found for '0000:02:00.0'","tokenid":"pvegpu"}}"#.into())
            };
        }
        if req.target.contains("/log?") {
            return (200, "OK", r#"{"data":[{"n":1,"t":"start VM 100"},{"n":2,"t":"TASK ERROR: no PCI device found for '0000:02:00.0'"}],"total":2}"#.into());
        }
        (501, "Method not implemented", r#"{"data":null}"#.into())
    }))
    .await;
    let c = client(&s, TlsTrust::Pinned(s.fingerprint));
    let upid: String = c
        .call(&pvegpu::pve::ApiRequest::post(
            "/nodes/pve/qemu/100/status/start",
            &Params::new(),
        ))
        .await
        .unwrap();
    let upid: Upid = upid.parse().unwrap();
    let wait = WaitOptions {
        first_poll: Duration::from_millis(10),
        ..WaitOptions::default()
    };
    let e = c.wait_task(&upid, &wait, &|_| {}).await.unwrap_err();
    let PveError::TaskFailed {
        exitstatus, log, ..
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(exitstatus, "no PCI device found for '0000:02:00.0'");
    assert_eq!(
        log.last().unwrap(),
        "TASK ERROR: no PCI device found for '0000:02:00.0'"
    );
    assert!(
        e.to_string().contains("TASK ERROR: no PCI device found"),
        "{e}"
    );
    let seen = s.seen.lock().unwrap();
    assert!(
        seen.iter().any(|r| r.target.starts_with(
            "/api2/json/nodes/pve/tasks/UPID%3Apve%3A0012ABCD%3A0A1B2C3D%3A66F1E2D3%3Aqmstart%3A100%3Aroot%40pam%21pvegpu%3A/status"
        )),
        "{seen:?}"
    );
    // Token auth sends no CSRF header, even on POST; the log is read from its start.
    assert!(
        seen.iter()
            .all(|r| r.headers.iter().all(|(k, _)| k != "csrfpreventiontoken"))
    );
    assert!(
        seen.iter()
            .any(|r| r.target.ends_with("/log?start=0&limit=50000"))
    );
}

#[tokio::test]
async fn task_deadline() {
    let s = serve(Arc::new(|_| {
        (200, "OK", r#"{"data":{"status":"running"}}"#.into())
    }))
    .await;
    let c = client(&s, TlsTrust::Pinned(s.fingerprint));
    let upid: Upid = "UPID:pve:0012ABCD:0A1B2C3D:66F1E2D3:qmstop:100:root@pam:"
        .parse()
        .unwrap();
    let wait = WaitOptions {
        timeout: Duration::from_millis(200),
        first_poll: Duration::from_millis(20),
        ..WaitOptions::default()
    };
    let e = c.wait_task(&upid, &wait, &|_| {}).await.unwrap_err();
    assert!(matches!(e, PveError::TaskTimeout { .. }), "{e:?}");
}

#[tokio::test]
async fn connect_errors_are_retried_then_reported() {
    // A port bound but never listened on, held for the whole test: connecting is refused,
    // and no other test's server can be handed the same port (a dropped listener's port
    // was, once, and the call met that server's certificate instead of a refusal).
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = held.local_addr().unwrap().port();
    let mut o = ClientOptions::new(
        format!("https://127.0.0.1:{port}"),
        TlsTrust::Pinned(Fingerprint([0; 32])),
    )
    .credentials(token());
    o.retries = 2;
    o.backoff = Duration::from_millis(5);
    let c = PveClient::new(o).unwrap();
    let t = std::time::Instant::now();
    let e = c
        .call::<Option<String>>(&pvegpu::pve::ApiRequest::post(
            "/nodes/pve/qemu",
            &Params::new(),
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, PveError::Connect { .. }), "{e:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(15),
        "backoff 5 + 10 ms"
    );
    assert!(e.hint().unwrap().contains("8006"));
    no_secret(&e);
}

/// A segment that URL normalisation would collapse never leaves pvegpu (#20): a node named
/// `..` by a server's UPID, or an inventory value, cannot turn `/nodes/../access/acl` into
/// another endpoint.
#[tokio::test]
async fn dot_segments_are_refused_before_sending() {
    let s = serve(Arc::new(|_| (200, "OK", r#"{"data":null}"#.into()))).await;
    let c = client(&s, TlsTrust::Pinned(s.fingerprint));
    for segments in [
        &["nodes", "..", "access", "acl"][..],
        &["nodes", "pve", ".", "status"][..],
        &["cluster", "mapping", "pci", ""][..],
    ] {
        let path = pvegpu::pve::request::api_path(segments);
        let e = c
            .get::<serde_json::Value>(&path, &Params::new())
            .await
            .unwrap_err();
        assert!(matches!(e, PveError::DotSegment { .. }), "{path}: {e}");
    }
    assert!(s.seen.lock().unwrap().is_empty(), "a request was sent");
    // a dot inside a segment is an ordinary character
    let ok: serde_json::Value = c
        .get(
            &pvegpu::pve::request::api_path(&["cluster", "mapping", "pci", "gpu.1"]),
            &Params::new(),
        )
        .await
        .unwrap();
    assert!(ok.is_null());
}
