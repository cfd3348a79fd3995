//! The fake Proxmox VE against the official schema (`../shared/pve-api`): its routes exist
//! there, it answers good and bad requests with PVE's status codes and messages, and a
//! create -> task -> config -> start flow works over real HTTPS. Shown as ignored where
//! `../shared/pve-api` is absent.

#[path = "support/fake_pve/mod.rs"]
mod fake_pve;
mod support;
use support::gate::{self, Gated, Need};

use fake_pve::{FakePve, LIMITED_TOKEN_SECRET, ROUTES, Schema, parse_upid, schema::shared_dir};
use serde_json::{Value, json};
use std::sync::Arc;

/// The tests are gated on `Need::Shared("pve-api")`, so where it is absent they show as ignored.
fn load_schema() -> Schema {
    Schema::load(&shared_dir())
        .unwrap_or_else(|| panic!("{} is absent or unreadable", shared_dir().display()))
}

/// A reqwest client that trusts only the fake's CA (no verification switched off).
fn client(fake: &FakePve) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    let der = pem_to_der(&fake.ca_pem);
    roots
        .add(rustls::pki_types::CertificateDer::from(der))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap()
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64_decode(&b64)
}

fn base64_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = A.iter().position(|x| *x == c).unwrap() as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

enum Auth<'a> {
    Token(&'a str),
    None,
}

struct Reply {
    status: u16,
    reason: String,
    body: Value,
}

async fn call(
    c: &reqwest::Client,
    fake: &FakePve,
    auth: &Auth<'_>,
    method: &str,
    path: &str,
    form: &[(&str, &str)],
) -> Reply {
    let url = format!("{}{path}", fake.api_url());
    let mut enc = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form {
        enc.append_pair(k, v);
    }
    let body = enc.finish();
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut rb = if method == "GET" || method == "DELETE" {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = if body.is_empty() {
            url
        } else {
            format!("{url}{sep}{body}")
        };
        c.request(m, url)
    } else {
        c.request(m, url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    if let Auth::Token(t) = auth {
        rb = rb.header("authorization", *t);
    }
    let resp = rb.send().await.expect("request reaches the fake");
    let status = resp.status().as_u16();
    let reason = resp
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    Reply {
        status,
        reason,
        body,
    }
}

fn every_route_of_the_fake_is_in_the_schema() {
    let schema = load_schema();
    for (method, path) in ROUTES {
        assert!(
            schema.method(path, method).is_some(),
            "{method} {path} is served by the fake but not in schema.json"
        );
    }
}

async fn documented_status_codes_and_messages() {
    let schema = load_schema();
    let fake =
        FakePve::start_with_schema(fake_pve::FakeCluster::new(), Some(Arc::new(schema))).await;
    assert!(fake.validating);
    let c = client(&fake);
    let root = fake.root_token_header();
    let tok = Auth::Token(&root);
    // A VM 100 with a raw hostpci entry, and a mapping `gpu0`.
    let r = call(
        &c,
        &fake,
        &tok,
        "POST",
        "/cluster/mapping/pci",
        &[
            ("id", "gpu0"),
            (
                "map",
                "node=pve,path=0000:02:00.0,id=10de:1b80,iommugroup=14,subsystem-id=10de:11d8",
            ),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    {
        let mut st = fake.state.lock().unwrap();
        st.vms.insert(
            100,
            fake_pve::Vm {
                node: "pve".into(),
                config: [
                    ("name".to_string(), "a".to_string()),
                    ("cores".into(), "2".into()),
                ]
                .into(),
                ..Default::default()
            },
        );
    }

    let pvf = "Parameter verification failed.";
    let limited = format!("PVEAPIToken=root@pam!limited={LIMITED_TOKEN_SECRET}");
    // (auth, method, path, form, status, message's first line, errors)
    #[allow(clippy::type_complexity)]
    let table: Vec<(&Auth, &str, &str, Vec<(&str, &str)>, u16, &str, Value)> = vec![
        (&tok, "GET", "/version", vec![], 200, "", Value::Null),
        (
            &tok,
            "GET",
            "/nodes/pve/qemu/99/config",
            vec![],
            400,
            pvf,
            json!({"vmid": "invalid format - value does not look like a valid VM ID\n"}),
        ),
        (
            &tok,
            "GET",
            "/nodes/pve/qemu/abc/config",
            vec![],
            400,
            pvf,
            json!({"vmid": "type check ('integer') failed - got 'abc'"}),
        ),
        (
            &tok,
            "GET",
            "/nodes/pve/qemu/100/config",
            vec![("bogus", "1")],
            400,
            pvf,
            json!({"bogus": "property is not defined in schema and the schema does not allow additional properties"}),
        ),
        (
            &tok,
            "GET",
            "/nodes/pve/qemu/100/config",
            vec![("current", "true")],
            400,
            pvf,
            json!({"current": "type check ('boolean') failed - got 'true'"}),
        ),
        (
            &tok,
            "PUT",
            "/nodes/pve/qemu/100/config",
            vec![("hostpci0", "02:00,pcie=1,foo=1")],
            400,
            pvf,
            json!({"hostpci0": "invalid format - invalid key in comma-separated list property: foo\n"}),
        ),
        (
            &tok,
            "PUT",
            "/nodes/pve/qemu/100/config",
            vec![("hostpci0", "02:00.0.1")],
            400,
            pvf,
            json!({"hostpci0": "invalid format - format error\nhostpci0.host: value does not match the regex pattern\n"}),
        ),
        (
            &tok,
            "PUT",
            "/nodes/pve/qemu/100/config",
            vec![("hostpci0", "0000:02:00,x-vga=maybe")],
            400,
            pvf,
            json!({"hostpci0": "invalid format - format error\nhostpci0.x-vga: type check ('boolean') failed - got 'maybe'\n"}),
        ),
        (
            &tok,
            "PUT",
            "/nodes/pve/qemu/100/config",
            vec![("hostpci16", "02:00")],
            400,
            pvf,
            json!({"hostpci16": "property is not defined in schema and the schema does not allow additional properties"}),
        ),
        (
            &tok,
            "PUT",
            "/nodes/pve/qemu/100/config",
            vec![("cores", "0")],
            400,
            pvf,
            json!({"cores": "value must have a minimum value of 1"}),
        ),
        (
            &tok,
            "PUT",
            "/nodes/pve/qemu/100/config",
            vec![("bios", "uefi")],
            400,
            pvf,
            json!({"bios": "value 'uefi' does not have a value in the enumeration 'seabios, ovmf'"}),
        ),
        (
            &tok,
            "POST",
            "/cluster/mapping/pci",
            vec![("map", "node=pve,path=0000:83:00.0,id=10de:1b80")],
            400,
            pvf,
            json!({"id": "property is missing and it is not optional"}),
        ),
        (
            &tok,
            "POST",
            "/nodes/pve/qemu",
            vec![("name", "x")],
            400,
            pvf,
            json!({"vmid": "property is missing and it is not optional"}),
        ),
        (
            &tok,
            "POST",
            "/cluster/mapping/pci",
            vec![
                ("id", "gpu0"),
                ("map", "node=pve,path=0000:02:00.0,id=10de:1b80"),
            ],
            500,
            "create hardware mapping failed: pci ID 'gpu0' already defined",
            Value::Null,
        ),
        (
            &tok,
            "PUT",
            "/nodes/pve/qemu/100/config",
            vec![
                ("cores", "4"),
                ("digest", "0000000000000000000000000000000000000000"),
            ],
            500,
            "checksum mismatch (file change by other user?)",
            Value::Null,
        ),
        (
            &tok,
            "PUT",
            "/nodes/pve/qemu/100/config",
            vec![("hostpci0", "0000:02:00,pcie=1")],
            500,
            "only root can set 'hostpci0' config for non-mapped devices",
            Value::Null,
        ),
        (
            &tok,
            "POST",
            "/nodes/pve/qemu",
            vec![("vmid", "100")],
            500,
            "unable to create VM 100 - VM 100 already exists on node 'pve'",
            Value::Null,
        ),
        (
            &tok,
            "PUT",
            "/nodes/pve/qemu/100/config",
            vec![],
            500,
            "no options specified",
            Value::Null,
        ),
        (
            &tok,
            "PUT",
            "/nodes/pve/qemu/100/config",
            vec![("delete", "memory")],
            400,
            pvf,
            json!({"delete": "unknown option 'memory'"}),
        ),
        (
            &tok,
            "GET",
            "/nodes/pve/qemu/101/config",
            vec![],
            500,
            "Configuration file 'nodes/pve/qemu-server/101.conf' does not exist",
            Value::Null,
        ),
        (
            &tok,
            "GET",
            "/cluster/nextid",
            vec![("vmid", "100")],
            400,
            pvf,
            json!({"vmid": "VM 100 already exists\n"}),
        ),
        (
            &tok,
            "GET",
            "/nodes/pve/tasks/nonsense/status",
            vec![],
            400,
            pvf,
            json!({"upid": "unable to parse worker upid\n"}),
        ),
        (
            &tok,
            "GET",
            "/nodes/pve/nonexistent",
            vec![],
            501,
            "Method 'GET /nodes/pve/nonexistent' not implemented",
            Value::Null,
        ),
        (
            &tok,
            "PATCH",
            "/version",
            vec![],
            501,
            "Method 'PATCH /version' not implemented",
            Value::Null,
        ),
        (
            &Auth::None,
            "GET",
            "/version",
            vec![],
            401,
            "No ticket",
            Value::Null,
        ),
        (
            &Auth::Token("PVEAPIToken=root@pam!pvegpu=wrong"),
            "GET",
            "/version",
            vec![],
            401,
            "Authentication failed!",
            Value::Null,
        ),
        (
            &Auth::None,
            "POST",
            "/access/ticket",
            vec![("username", "root@pam"), ("password", "nope")],
            401,
            "authentication failure",
            Value::Null,
        ),
    ];
    for (auth, method, path, form, status, msg, errors) in &table {
        let r = call(&c, &fake, auth, method, path, form).await;
        let what = format!(
            "{method} {path} {form:?}: {} {} {}",
            r.status, r.reason, r.body
        );
        assert_eq!(r.status, *status, "{what}");
        if *status == 200 {
            assert!(r.body.get("data").is_some(), "{what}");
            continue;
        }
        assert_eq!(r.reason, *msg, "reason phrase of {what}");
        if *status == 401 && *path != "/access/ticket" {
            assert!(r.body.is_null(), "401 bodies are empty: {what}");
            continue;
        }
        assert_eq!(r.body["data"], Value::Null, "{what}");
        assert_eq!(
            r.body["message"].as_str().unwrap().lines().next().unwrap(),
            *msg,
            "{what}"
        );
        assert_eq!(
            r.body.get("errors").cloned().unwrap_or(Value::Null),
            *errors,
            "{what}"
        );
    }

    // A token may use a mapping, with Mapping.Use; the limited token lacks it.
    let r = call(
        &c,
        &fake,
        &tok,
        "PUT",
        "/nodes/pve/qemu/100/config",
        &[("hostpci0", "mapping=gpu0")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        &c,
        &fake,
        &Auth::Token(&limited),
        "PUT",
        "/nodes/pve/qemu/100/config",
        &[("hostpci1", "mapping=gpu0")],
    )
    .await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (
            403,
            "Permission check failed (/mapping/pci/gpu0, Mapping.Use)"
        )
    );
    // Changing an existing raw entry needs root too (the old value is checked).
    fake.state
        .lock()
        .unwrap()
        .vms
        .get_mut(&100)
        .unwrap()
        .config
        .insert("hostpci2".into(), "0000:83:00".into());
    let r = call(
        &c,
        &fake,
        &tok,
        "PUT",
        "/nodes/pve/qemu/100/config",
        &[("delete", "hostpci2")],
    )
    .await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (
            500,
            "only root can set 'hostpci2' config for non-mapped devices"
        )
    );

    // Every parameter the fake accepted is valid against the schema.
    let schema = load_schema();
    for rec in fake.accepted() {
        let mut params = rec.params.clone();
        let route = rec.route.clone().unwrap();
        assert!(
            schema.validate(&route, &rec.method, &mut params).is_ok(),
            "{rec:?}"
        );
    }
}

async fn create_task_config_start_over_https() {
    let schema = load_schema();
    let fake =
        FakePve::start_with_schema(fake_pve::FakeCluster::new(), Some(Arc::new(schema))).await;
    let c = client(&fake);
    assert_eq!(fake.fingerprint.len(), 32 * 3 - 1);
    assert!(
        fake.fingerprint
            .chars()
            .all(|ch| ch == ':' || ch.is_ascii_hexdigit() && !ch.is_ascii_lowercase())
    );

    // root@pam ticket: raw host= is allowed, writes need the CSRF token.
    let r = call(
        &c,
        &fake,
        &Auth::None,
        "POST",
        "/access/ticket",
        &[("username", "root@pam"), ("password", "secret")],
    )
    .await;
    assert_eq!(r.status, 200);
    let ticket = r.body["data"]["ticket"].as_str().unwrap().to_string();
    let csrf = r.body["data"]["CSRFPreventionToken"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ticket.starts_with("PVE:root@pam:"), "{ticket}");
    let cookie = format!(
        "PVEAuthCookie={}",
        form_urlencoded::byte_serialize(ticket.as_bytes()).collect::<String>()
    );
    let api = fake.api_url();

    let r = c
        .get(format!("{api}/cluster/nextid"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let next: Value = r.json_or_text().await;
    assert_eq!(next["data"], json!("100"), "nextid is a string, as in PVE");

    let form = [
        ("vmid", "100"),
        ("name", "triton-gpu"),
        ("memory", "30720"),
        ("cores", "10"),
        ("cpu", "host,flags=+aes"),
        ("scsi0", "nvme-zfs:100"),
        ("net0", "virtio,bridge=vmbr0"),
        ("onboot", "1"),
        ("hostpci0", "0000:02:00"),
        ("hostpci1", "0000:83:00"),
    ];
    let enc = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let no_csrf = c
        .post(format!("{api}/nodes/pve/qemu"))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(enc.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status().as_u16(), 401);
    let r = c
        .post(format!("{api}/nodes/pve/qemu"))
        .header("cookie", &cookie)
        .header("CSRFPreventionToken", &csrf)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(enc)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let upid = r.json_or_text().await["data"].as_str().unwrap().to_string();
    let (node, _pid, _pstart, _start, kind, id, user) = parse_upid(&upid).expect("UPID parses");
    assert_eq!(
        (node.as_str(), kind.as_str(), id.as_str(), user.as_str()),
        ("pve", "qmcreate", "100", "root@pam")
    );

    let wait = |upid: String| {
        let (c, api, cookie) = (c.clone(), api.clone(), cookie.clone());
        async move {
            let enc: String = form_urlencoded::byte_serialize(upid.as_bytes()).collect();
            for _ in 0..10 {
                let s = c
                    .get(format!("{api}/nodes/pve/tasks/{enc}/status"))
                    .header("cookie", &cookie)
                    .send()
                    .await
                    .unwrap()
                    .json_or_text()
                    .await;
                if s["data"]["status"] == "stopped" {
                    let log = c
                        .get(format!("{api}/nodes/pve/tasks/{enc}/log"))
                        .header("cookie", &cookie)
                        .send()
                        .await
                        .unwrap()
                        .json_or_text()
                        .await;
                    assert_eq!(log["total"], json!(log["data"].as_array().unwrap().len()));
                    return (s["data"].clone(), log["data"].clone());
                }
                assert_eq!(s["data"]["status"], "running");
                assert!(s["data"].get("exitstatus").is_none());
            }
            panic!("task never stopped");
        }
    };
    let (status, log) = wait(upid).await;
    assert_eq!(status["exitstatus"], "OK");
    assert_eq!(log.as_array().unwrap().last().unwrap()["t"], "TASK OK");

    let conf = c
        .get(format!("{api}/nodes/pve/qemu/100/config"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json_or_text()
        .await;
    let conf = &conf["data"];
    assert_eq!(conf["hostpci0"], "0000:02:00");
    assert_eq!(conf["cores"], 10, "integers come back as numbers");
    assert_eq!(conf["scsi0"], "nvme-zfs:vm-100-disk-0,size=100G");
    assert!(
        conf["net0"]
            .as_str()
            .unwrap()
            .starts_with("virtio=BC:24:11:"),
        "{}",
        conf["net0"]
    );
    assert!(conf.get("lock").is_none());
    assert_eq!(conf["digest"].as_str().unwrap().len(), 40);

    // Start, then a hostpci change on the running VM stays pending.
    let token = fake.root_token_header();
    let r = call(
        &c,
        &fake,
        &Auth::Token(&token),
        "POST",
        "/nodes/pve/qemu/100/status/start",
        &[],
    )
    .await;
    let upid = r.body["data"].as_str().unwrap().to_string();
    assert_eq!(parse_upid(&upid).unwrap().6, "root@pam!pvegpu");
    let (status, _) = wait(upid).await;
    assert_eq!(status["exitstatus"], "OK");
    assert_eq!(status["tokenid"], "pvegpu");
    let cur = call(
        &c,
        &fake,
        &Auth::Token(&token),
        "GET",
        "/nodes/pve/qemu/100/status/current",
        &[],
    )
    .await;
    assert_eq!(cur.body["data"]["status"], "running");

    let r = call(
        &c,
        &fake,
        &Auth::Token(&token),
        "POST",
        "/cluster/mapping/pci",
        &[
            ("id", "gpu1"),
            (
                "map",
                "node=pve,path=0000:83:00.0,id=10de:1b80,iommugroup=40",
            ),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let digest = conf["digest"].as_str().unwrap().to_string();
    let r = call(
        &c,
        &fake,
        &Auth::Token(&token),
        "PUT",
        "/nodes/pve/qemu/100/config",
        &[("hostpci1", "mapping=gpu1"), ("digest", &digest)],
    )
    .await;
    assert_eq!(
        r.status, 500,
        "hostpci1 holds raw host=: only root may change it"
    );
    let r = c
        .put(format!("{api}/nodes/pve/qemu/100/config"))
        .header("cookie", &cookie)
        .header("CSRFPreventionToken", &csrf)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("hostpci1=mapping%3Dgpu1&digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let pending = call(
        &c,
        &fake,
        &Auth::Token(&token),
        "GET",
        "/nodes/pve/qemu/100/pending",
        &[],
    )
    .await;
    let entry = pending.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "hostpci1")
        .unwrap()
        .clone();
    assert_eq!(
        (entry["value"].as_str(), entry["pending"].as_str()),
        (Some("0000:83:00"), Some("mapping=gpu1"))
    );
    let current = call(
        &c,
        &fake,
        &Auth::Token(&token),
        "GET",
        "/nodes/pve/qemu/100/config",
        &[("current", "1")],
    )
    .await;
    assert_eq!(current.body["data"]["hostpci1"], "0000:83:00");

    // A stop and start applies it; a failing start surfaces TASK ERROR.
    let r = call(
        &c,
        &fake,
        &Auth::Token(&token),
        "POST",
        "/nodes/pve/qemu/100/status/stop",
        &[],
    )
    .await;
    wait(r.body["data"].as_str().unwrap().to_string()).await;
    fake.state
        .lock()
        .unwrap()
        .mappings
        .get_mut("gpu1")
        .unwrap()
        .map = vec!["node=pve,path=0000:83:00.0,id=10de:2204".into()];
    let r = call(
        &c,
        &fake,
        &Auth::Token(&token),
        "POST",
        "/nodes/pve/qemu/100/status/start",
        &[],
    )
    .await;
    let (status, log) = wait(r.body["data"].as_str().unwrap().to_string()).await;
    assert_eq!(
        status["exitstatus"],
        "PCI device mapping invalid (hardware probably changed): 'id' does not match for 'gpu1' (10de:1b80 != 10de:2204) "
    );
    assert_eq!(
        log.as_array().unwrap().last().unwrap()["t"],
        "TASK ERROR: PCI device mapping invalid (hardware probably changed): 'id' does not match for 'gpu1' (10de:1b80 != 10de:2204) "
    );

    // Every accepted request is valid against the schema.
    let schema = load_schema();
    for rec in fake.accepted() {
        let mut params = rec.params.clone();
        assert!(
            schema
                .validate(rec.route.as_deref().unwrap(), &rec.method, &mut params)
                .is_ok(),
            "{rec:?}"
        );
    }
}

trait JsonOrText {
    async fn json_or_text(self) -> Value;
}

impl JsonOrText for reqwest::Response {
    async fn json_or_text(self) -> Value {
        let t = self.text().await.unwrap();
        serde_json::from_str(&t).unwrap_or(Value::String(t))
    }
}

fn main() {
    Gated::new()
        .test(
            "every_route_of_the_fake_is_in_the_schema",
            &[Need::Shared("pve-api")],
            every_route_of_the_fake_is_in_the_schema,
        )
        .test(
            "documented_status_codes_and_messages",
            &[Need::Shared("pve-api")],
            || gate::block_on(documented_status_codes_and_messages()),
        )
        .test(
            "create_task_config_start_over_https",
            &[Need::Shared("pve-api")],
            || gate::block_on(create_task_config_start_over_https()),
        )
        .run()
}
