//! A faithful fake Proxmox VE API server for tests.
//!
//! `FakePve::start().await` serves `/api2/json` over HTTPS (a certificate signed by a
//! throw-away CA, as `pve-root-ca` signs `pve-ssl.pem`; the leaf's SHA-256 fingerprint is
//! given in the `AB:CD:..` form the GUI shows) and over plain HTTP, both on 127.0.0.1 with
//! a free port. State lives in [`FakeCluster`] behind `Arc<Mutex<_>>`, so a test can seed
//! and inspect it. Every request is validated against the official schema in
//! `../shared/pve-api` (when present) exactly as `PVE::JSONSchema` does, and every request
//! is recorded with its answer.
//!
//! Request pipeline, in the order pve-http-server applies it: unknown path or method (501),
//! body on GET/DELETE (501), credentials (401, empty body), CSRF for ticket writes (401),
//! parameters (400 `Parameter verification failed.`), permissions (403), handler (500 for
//! handler errors, 200 `{"data": ...}` otherwise). The HTTP reason phrase is the first
//! line of the message, as in PVE.
#![allow(dead_code)]

pub mod api;
pub mod perms;
pub mod schema;
pub mod state;
mod tls;

pub use schema::{Params, Schema};
#[allow(unused_imports)]
pub use state::{
    Effect, FakeCluster, LIMITED_TOKEN_SECRET, PciDevice, PciMapping, Principal, ROOT_TOKEN_SECRET,
    Task, Token, Vm,
};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The routes the fake serves, as schema path templates. Every one must exist in
/// schema.json with that method (checked by tests/fake_pve_conformance.rs).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/version"),
    ("GET", "/nodes"),
    ("GET", "/nodes/{node}/hardware/pci"),
    ("GET", "/cluster/mapping/pci"),
    ("POST", "/cluster/mapping/pci"),
    ("GET", "/cluster/mapping/pci/{id}"),
    ("PUT", "/cluster/mapping/pci/{id}"),
    ("DELETE", "/cluster/mapping/pci/{id}"),
    ("GET", "/cluster/nextid"),
    ("POST", "/nodes/{node}/qemu"),
    ("GET", "/nodes/{node}/qemu/{vmid}/config"),
    ("POST", "/nodes/{node}/qemu/{vmid}/config"),
    ("PUT", "/nodes/{node}/qemu/{vmid}/config"),
    ("GET", "/nodes/{node}/qemu/{vmid}/pending"),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/start"),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/stop"),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/shutdown"),
    ("GET", "/nodes/{node}/qemu/{vmid}/status/current"),
    ("GET", "/nodes/{node}/tasks/{upid}/status"),
    ("GET", "/nodes/{node}/tasks/{upid}/log"),
    ("GET", "/cluster/resources"),
    ("GET", "/nodes/{node}/storage"),
    ("GET", "/nodes/{node}/storage/{storage}/content"),
    ("DELETE", "/nodes/{node}/qemu/{vmid}"),
    ("PUT", "/nodes/{node}/qemu/{vmid}/resize"),
    (
        "GET",
        "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces",
    ),
    ("GET", "/access/ticket"),
    ("GET", "/access/permissions"),
    ("POST", "/access/ticket"),
];

/// One request as the fake saw it, with the status it answered.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path relative to `/api2/json`, decoded.
    pub path: String,
    /// The schema template that matched, if any.
    pub route: Option<String>,
    /// All parameters (path, query and body), after normalisation.
    pub params: Params,
    /// `user@realm` or `user@realm!token`, when authenticated.
    pub principal: Option<String>,
    pub status: u16,
}

/// An API error: status, message (reason phrase is its first line) and per-parameter errors.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub errors: Option<BTreeMap<String, String>>,
    /// 401 answers on paths other than /access/ticket have an empty body.
    pub empty_body: bool,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            errors: None,
            empty_body: false,
        }
    }
    /// A handler `die "text\n"`: 500.
    pub fn die(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }
    /// 400 `Parameter verification failed.` with one parameter error.
    pub fn param(name: &str, msg: impl Into<String>) -> Self {
        Self::params([(name.to_string(), msg.into())].into())
    }
    pub fn params(errors: BTreeMap<String, String>) -> Self {
        ApiError {
            status: 400,
            message: "Parameter verification failed.\n".into(),
            errors: Some(errors),
            empty_body: false,
        }
    }
    pub fn forbidden(path: &str, privilege: &str) -> Self {
        Self::new(
            403,
            format!("Permission check failed ({path}, {privilege})\n"),
        )
    }
}

pub type ApiResult = Result<Value, ApiError>;

/// The longest a held request waits for others (then nothing is held any more).
pub const HOLD_LIMIT: Duration = Duration::from_secs(30);

/// Requests in flight, their maximum so far, and an optional hold: until `n` requests are
/// in flight together, each request waits before it is answered. A client that sends its
/// requests one after the other never gets there: its first request is answered after
/// [`HOLD_LIMIT`] and the hold is off from then on (`hold_met` stays false). A client that
/// sends them concurrently opens the hold at once. The limit only keeps a sequential client
/// from hanging; what a test asserts is `hold_met`, never a duration.
pub struct Gate {
    in_flight: AtomicUsize,
    /// The most requests in flight together so far (it only grows, so a held request that
    /// wakes up late still sees that the others came).
    peak: tokio::sync::watch::Sender<usize>,
    hold_until: AtomicUsize,
    met: AtomicBool,
    gave_up: AtomicBool,
}

/// One request in flight; leaving drops the count.
struct InFlight(Arc<Gate>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Gate {
    fn new() -> Gate {
        Gate {
            in_flight: AtomicUsize::new(0),
            peak: tokio::sync::watch::Sender::new(0),
            hold_until: AtomicUsize::new(0),
            met: AtomicBool::new(false),
            gave_up: AtomicBool::new(false),
        }
    }

    async fn enter(self: &Arc<Self>) -> InFlight {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.send_if_modified(|peak| {
            let more = now > *peak;
            *peak = (*peak).max(now);
            more
        });
        let guard = InFlight(self.clone());
        let want = self.hold_until.load(Ordering::SeqCst);
        if want > 0 && !self.met.load(Ordering::SeqCst) && !self.gave_up.load(Ordering::SeqCst) {
            let mut rx = self.peak.subscribe();
            match tokio::time::timeout(HOLD_LIMIT, rx.wait_for(|peak| *peak >= want)).await {
                Ok(_) => self.met.store(true, Ordering::SeqCst),
                Err(_) => self.gave_up.store(true, Ordering::SeqCst),
            }
        }
        guard
    }
}

pub(crate) struct Ctx {
    pub state: Arc<Mutex<FakeCluster>>,
    pub schema: Option<Arc<Schema>>,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    pub auth_delay: Duration,
    pub gate: Arc<Gate>,
    pub interrupt: Arc<Interrupt>,
}

/// Where a client's run is cut, counted in requests: `Before` the server acts on request
/// `at` (the connection dropped on the way, or the process killed while sending), or `After`
/// it acted and before its reply leaves (killed while waiting for the answer). The request
/// then never answers; the test kills the client once `hit` is set.
#[derive(Default)]
pub struct Interrupt {
    at: AtomicUsize,
    after: AtomicBool,
    seen: AtomicUsize,
    hit: AtomicBool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    Before,
    After,
}

impl Interrupt {
    /// Whether this request (counted here) is the one to cut, and where.
    fn cut(&self) -> Option<Cut> {
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        (self.at.load(Ordering::SeqCst) == n).then(|| {
            if self.after.load(Ordering::SeqCst) {
                Cut::After
            } else {
                Cut::Before
            }
        })
    }

    /// The client is stopped here for good.
    async fn hang(&self) -> ! {
        self.hit.store(true, Ordering::SeqCst);
        std::future::pending::<()>().await;
        unreachable!()
    }
}

/// A running fake. Dropping it stops both servers.
pub struct FakePve {
    /// `https://127.0.0.1:PORT` (append `/api2/json/...`).
    pub https_base: String,
    /// `http://127.0.0.1:PORT`.
    pub http_base: String,
    /// SHA-256 of the served certificate, `AB:CD:...` upper-case.
    pub fingerprint: String,
    /// The served (leaf) certificate, PEM.
    pub cert_pem: String,
    /// The CA that signed it, PEM (trust this, or pin `fingerprint`).
    pub ca_pem: String,
    pub state: Arc<Mutex<FakeCluster>>,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    /// Whether requests are validated against the shared schema.
    pub validating: bool,
    gate: Arc<Gate>,
    interrupt: Arc<Interrupt>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakePve {
    fn drop(&mut self) {
        for s in &self.servers {
            s.abort();
        }
    }
}

impl FakePve {
    /// Start with [`FakeCluster::new`]. Needs a tokio runtime.
    pub async fn start() -> FakePve {
        Self::start_with(FakeCluster::new()).await
    }

    pub async fn start_with(cluster: FakeCluster) -> FakePve {
        let schema = Schema::load(&schema::shared_dir()).map(Arc::new);
        if schema.is_none() {
            eprintln!(
                "fake_pve: {} not found: request validation against the PVE schema is DISABLED",
                schema::shared_dir().display()
            );
        }
        Self::start_with_schema(cluster, schema).await
    }

    pub async fn start_with_schema(
        mut cluster: FakeCluster,
        schema: Option<Arc<Schema>>,
    ) -> FakePve {
        let cert = tls::generate();
        cluster.ssl_fingerprint = cert.fingerprint.clone();
        let state = Arc::new(Mutex::new(cluster));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let validating = schema.is_some();
        let gate = Arc::new(Gate::new());
        let interrupt = Arc::new(Interrupt::default());
        let ctx = Arc::new(Ctx {
            state: state.clone(),
            schema,
            requests: requests.clone(),
            auth_delay: Duration::ZERO,
            gate: gate.clone(),
            interrupt: interrupt.clone(),
        });
        let app = Router::new().fallback(handle).with_state(ctx);

        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_base = format!("http://{}", plain.local_addr().unwrap());
        let app2 = app.clone();
        let s1 = tokio::spawn(async move {
            let _ = axum::serve(plain, app2).await;
        });
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let https_base = format!("https://{}", tcp.local_addr().unwrap());
        let listener = tls::TlsListener::new(tcp, &cert);
        let s2 = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakePve {
            https_base,
            http_base,
            fingerprint: cert.fingerprint,
            cert_pem: cert.cert_pem,
            ca_pem: cert.ca_pem,
            state,
            requests,
            validating,
            gate,
            interrupt,
            servers: vec![s1, s2],
        }
    }

    /// Cut the client's run at its `at`-th request from now on (1-based; see [`Interrupt`]).
    pub fn interrupt_at(&self, at: usize, cut: Cut) {
        let i = &self.interrupt;
        i.seen.store(0, Ordering::SeqCst);
        i.hit.store(false, Ordering::SeqCst);
        i.after.store(cut == Cut::After, Ordering::SeqCst);
        i.at.store(at, Ordering::SeqCst);
    }

    /// Whether the cut request came.
    pub fn interrupted(&self) -> bool {
        self.interrupt.hit.load(Ordering::SeqCst)
    }

    /// Stop cutting requests.
    pub fn no_interrupt(&self) {
        self.interrupt.at.store(0, Ordering::SeqCst);
    }

    /// Every task still running ends as its worker would: PVE's workers run on without the
    /// client that started them (the fake otherwise advances a task only when it is polled).
    pub fn finish_running_tasks(&self) {
        let mut st = self.state.lock().unwrap();
        let running: Vec<String> = st
            .tasks
            .iter()
            .filter(|(_, t)| t.exitstatus.is_none())
            .map(|(u, _)| u.clone())
            .collect();
        for upid in running {
            st.finish_task(&upid);
        }
    }

    /// Hold requests until `n` are in flight together (see [`Gate`]).
    pub fn hold_until_in_flight(&self, n: usize) {
        self.gate.hold_until.store(n, Ordering::SeqCst);
    }

    /// Whether the hold opened because `n` requests were in flight together.
    pub fn hold_met(&self) -> bool {
        self.gate.met.load(Ordering::SeqCst)
    }

    /// The most requests that were in flight at the same time.
    pub fn max_in_flight(&self) -> usize {
        *self.gate.peak.borrow()
    }

    /// `https://127.0.0.1:PORT/api2/json`.
    pub fn api_url(&self) -> String {
        format!("{}/api2/json", self.https_base)
    }

    /// The `Authorization` header value of the privsep=0 root token.
    pub fn root_token_header(&self) -> String {
        format!("PVEAPIToken=root@pam!pvegpu={ROOT_TOKEN_SECRET}")
    }

    /// Requests the fake accepted (answered 2xx).
    pub fn accepted(&self) -> Vec<Recorded> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| (200..300).contains(&r.status))
            .cloned()
            .collect()
    }

    pub fn all_requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// Match a decoded relative path against the route templates.
pub fn match_route(method: &str, path: &str) -> Option<(&'static str, BTreeMap<String, String>)> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    'routes: for (m, tpl) in ROUTES {
        if *m != method {
            continue;
        }
        let tsegs: Vec<&str> = tpl.trim_matches('/').split('/').collect();
        if tsegs.len() != segs.len() {
            continue;
        }
        let mut params = BTreeMap::new();
        for (t, s) in tsegs.iter().zip(&segs) {
            if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                if s.is_empty() {
                    continue 'routes;
                }
                params.insert(name.to_string(), s.to_string());
            } else if t != s {
                continue 'routes;
            }
        }
        return Some((tpl, params));
    }
    None
}

async fn handle(
    State(ctx): State<Arc<Ctx>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _in_flight = ctx.gate.enter().await;
    let raw_path = uri.path();
    let rel = percent_decode(raw_path.strip_prefix("/api2/json").unwrap_or(raw_path));
    let mut rec = Recorded {
        method: method.to_string(),
        path: rel.clone(),
        route: None,
        params: Params::new(),
        principal: None,
        status: 0,
    };
    let cut = ctx.interrupt.cut();
    if cut == Some(Cut::Before) {
        ctx.interrupt.hang().await;
    }
    let result = process(&ctx, &method, &uri, &headers, &body, &mut rec).await;
    let resp = match result {
        Ok(data) => {
            rec.status = 200;
            let mut body = json!({ "data": data });
            // The task log also carries `total`: the lines the log has.
            if rec.route.as_deref() == Some("/nodes/{node}/tasks/{upid}/log") {
                let upid = rec
                    .params
                    .get("upid")
                    .map(schema::scalar_text)
                    .unwrap_or_default();
                let st = ctx.state.lock().unwrap();
                body["total"] = json!(st.tasks.get(&upid).map_or(1, |t| t.log.len().max(1)));
            }
            reply(200, None, body)
        }
        Err(e) => {
            rec.status = e.status;
            if e.status == 401 && !ctx.auth_delay.is_zero() {
                tokio::time::sleep(ctx.auth_delay).await;
            }
            let body = if e.empty_body {
                Value::Null
            } else {
                let mut b = json!({ "data": null, "message": e.message });
                if let Some(errs) = &e.errors {
                    b["errors"] = json!(errs);
                }
                b
            };
            reply(e.status, Some(&e.message), body)
        }
    };
    ctx.requests.lock().unwrap().push(rec);
    if cut == Some(Cut::After) {
        ctx.interrupt.hang().await;
    }
    resp
}

fn reply(status: u16, message: Option<&str>, body: Value) -> Response {
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let mut resp = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json;charset=UTF-8")
        .body(Body::from(text))
        .unwrap();
    if let Some(msg) = message {
        let first = msg.lines().next().unwrap_or("").trim();
        if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(first.to_string()) {
            resp.extensions_mut().insert(reason);
        }
    }
    resp
}

async fn process(
    ctx: &Ctx,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    rec: &mut Recorded,
) -> ApiResult {
    let m = method.as_str();
    if !uri.path().starts_with("/api2/json/") {
        return Err(ApiError::new(
            501,
            format!("Method '{m} {}' not implemented", uri.path()),
        ));
    }
    if m == "HEAD" {
        return Err(ApiError::new(501, "method 'HEAD' not available"));
    }
    let Some((route, path_params)) = match_route(m, &rec.path) else {
        return Err(ApiError::new(
            501,
            format!("Method '{m} {}' not implemented", rec.path),
        ));
    };
    rec.route = Some(route.to_string());
    if (m == "GET" || m == "DELETE") && !body.is_empty() {
        return Err(ApiError::new(
            501,
            format!("Unexpected content for method '{m}'"),
        ));
    }

    // Credentials.
    let needs_auth = route != "/access/ticket";
    let principal = if needs_auth {
        let p = authenticate(ctx, headers)?;
        if p.by_ticket && m != "GET" {
            check_csrf(ctx, &p, headers)?;
        }
        rec.principal = Some(p.id());
        Some(p)
    } else {
        None
    };

    // Parameters: body, then query over it, then the path (conflicts are errors).
    let mut params = Params::new();
    if m == "POST" || m == "PUT" {
        let ctype = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if ctype.starts_with("application/json") && !body.is_empty() {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::new(400, format!("unable to parse JSON body - {e}")))?;
            if let Value::Object(o) = v {
                params.extend(o.into_iter().filter(|(_, v)| !v.is_null()));
            }
        } else {
            add_form(&mut params, body);
        }
    }
    add_form(&mut params, uri.query().unwrap_or("").as_bytes());
    let mut conflicts = BTreeMap::new();
    for (k, v) in path_params {
        match params.get(&k) {
            Some(existing) if schema::scalar_text(existing) != v => {
                conflicts.insert(
                    k.clone(),
                    "duplicate parameter (already defined in URI) with conflicting values!".into(),
                );
            }
            _ => {
                params.insert(k, Value::String(v));
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(ApiError::params(conflicts));
    }
    if let Some(schema) = &ctx.schema {
        let res = schema.validate(route, m, &mut params);
        rec.params = params.clone();
        res.map_err(ApiError::params)?;
        if let Some(p) = &principal
            && p.token.is_some()
            && schema
                .method(route, m)
                .is_some_and(|i| i["allowtoken"] == json!(0))
        {
            return Err(ApiError::new(
                403,
                format!(
                    "Permission check failed (URI '{}' not available with API token, need proper ticket.)\n",
                    rec.path
                ),
            ));
        }
    } else {
        rec.params = params.clone();
    }
    let mut st = ctx.state.lock().unwrap();
    api::dispatch(&mut st, m, route, principal.as_ref(), &params)
}

/// Form or query pairs; a repeated key becomes an array; `k=` is "undefined" (dropped).
fn add_form(params: &mut Params, data: &[u8]) {
    for (k, v) in form_urlencoded::parse(data) {
        if v.is_empty() {
            continue;
        }
        let (k, v) = (k.into_owned(), Value::String(v.into_owned()));
        match params.get_mut(&k) {
            Some(Value::Array(list)) => list.push(v),
            Some(existing) => *existing = Value::Array(vec![existing.clone(), v]),
            None => {
                params.insert(k, v);
            }
        }
    }
}

fn auth_failed(reason: &str) -> ApiError {
    ApiError {
        status: 401,
        message: reason.into(),
        errors: None,
        empty_body: true,
    }
}

/// Ticket (cookie, or `Authorization: PVEAuthCookie=`) wins over an API token.
fn authenticate(ctx: &Ctx, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let st = ctx.state.lock().unwrap();
    let ticket = headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("PVEAuthCookie=").map(percent_decode))
        .or_else(|| {
            let a = headers.get("authorization")?.to_str().ok()?;
            a.strip_prefix("PVEAuthCookie=").map(percent_decode)
        });
    if let Some(ticket) = ticket {
        return match st.tickets.iter().find(|t| t.ticket == ticket && !t.expired) {
            Some(t) => Ok(Principal {
                user: t.user.clone(),
                token: None,
                by_ticket: true,
            }),
            None => Err(auth_failed("Authentication failed!")),
        };
    }
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(auth_failed("No ticket"));
    };
    let re = regex::Regex::new(r"(?:^|\s)PVEAPIToken(?:=| )([^;]*)").unwrap();
    let Some(value) = re.captures(auth).map(|c| percent_decode(&c[1])) else {
        return Err(auth_failed("No ticket"));
    };
    let Some((tokenid, secret)) = value.rsplit_once('=') else {
        return Err(auth_failed("Authentication failed!"));
    };
    match st.tokens.get(tokenid) {
        Some(t) if t.secret == secret => {
            let (user, name) = tokenid.split_once('!').unwrap();
            Ok(Principal {
                user: user.into(),
                token: Some(name.into()),
                by_ticket: false,
            })
        }
        _ => Err(auth_failed("Authentication failed!")),
    }
}

fn check_csrf(ctx: &Ctx, p: &Principal, headers: &HeaderMap) -> Result<(), ApiError> {
    let st = ctx.state.lock().unwrap();
    let given = headers
        .get("csrfpreventiontoken")
        .and_then(|v| v.to_str().ok());
    let ok = given.is_some_and(|g| st.tickets.iter().any(|t| t.user == p.user && t.csrf == g));
    if ok {
        Ok(())
    } else {
        Err(auth_failed("Permission denied - invalid csrf token"))
    }
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse a UPID per NOTES.md §5: `(node, pid, pstart, starttime, type, id, user)`.
pub fn parse_upid(upid: &str) -> Option<(String, u32, u64, u32, String, String, String)> {
    let re = regex::Regex::new(
        r"^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$",
    )
    .unwrap();
    let c = re.captures(upid)?;
    Some((
        c[1].to_string(),
        u32::from_str_radix(&c[3], 16).ok()?,
        u64::from_str_radix(&c[4], 16).ok()?,
        u32::from_str_radix(&c[5], 16).ok()?,
        c[6].to_string(),
        c[7].to_string(),
        c[8].to_string(),
    ))
}

/// Object helper for handlers.
pub fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// A cluster with one node named like the QEMU test host (`pvetest`), listing the test host's
/// two target devices as its probe shows them: QEMU's edu device in IOMMU group 3 and an
/// e1000 NIC in group 4.
pub fn testhost_cluster() -> FakeCluster {
    let mut c = FakeCluster::new();
    let mut node = c.nodes.remove("pve").unwrap();
    node.name = "pvetest".into();
    let dev = |id: &str, class: &str, vendor: &str, device: &str, group: i64| PciDevice {
        id: id.into(),
        class: class.into(),
        vendor: vendor.into(),
        device: device.into(),
        subsystem_vendor: "0x1af4".into(),
        subsystem_device: "0x1100".into(),
        iommugroup: group,
        mdev: false,
        vendor_name: None,
        device_name: None,
    };
    node.pci = vec![
        dev("0000:00:03.0", "0x00ff00", "0x1234", "0x11e8", 3),
        dev("0000:00:04.0", "0x020000", "0x8086", "0x100e", 4),
    ];
    c.nodes.insert("pvetest".into(), node);
    c.task_polls = 2;
    c
}
