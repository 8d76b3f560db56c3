//! Access control (issue #8): every route of the route table × every role × own/other bot
//! against the policy table; key life cycle through the CLI and the admin endpoint; open
//! mode; rate limit. Also the harness of the `access_*` modules: a server whose pid is
//! known and a client that sends `Authorization: Bearer <key>`.

use crate::common::{self, ALL_FROM, ALL_TO, message, run_cli};
use convlog::http::routes::routes;
use convlog_engine::auth::{Policy, Role};
use convlog_gen::GenMessage;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(90);

/// One HTTP answer with its headers.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    /// The body as text (invalid UTF-8 replaced).
    pub body: String,
    /// The body as sent (protobuf answers are not text).
    pub bytes: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Resp {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The error code of an error body (an OTLP route's `google.rpc.Status`
    /// in JSON says it first in its message: `"<code>: <message>"`).
    pub fn code(&self) -> String {
        let json = self.json();
        let otlp = || {
            json["message"]
                .as_str()?
                .split_once(':')
                .map(|(code, _)| code)
        };
        json["error"]["code"]
            .as_str()
            .or_else(otlp)
            .unwrap_or("")
            .to_string()
    }

    /// A response header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP client of one server that can present a key.
#[derive(Clone)]
pub struct Api {
    agent: ureq::Agent,
    pub base: String,
}

impl Api {
    /// `method path` with an optional key, body and extra headers.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(key) = key {
            builder = builder.header("Authorization", format!("Bearer {key}"));
        }
        let typed = headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        if body.is_some() && !typed {
            builder = builder.header("Content-Type", "application/json");
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let result = match (body, method) {
            (Some(body), _) => self.agent.run(builder.body(body).expect("request")),
            (None, "POST" | "PUT") => self.agent.run(builder.body(&b""[..]).expect("request")),
            (None, _) => self.agent.run(builder.body(()).expect("request")),
        };
        let mut response = result.unwrap_or_else(|err| panic!("{method} {path}: {err}"));
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        // A stream (the live tail) never ends: its status and headers are the answer.
        let streaming = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let bytes = match streaming {
            true => Vec::new(),
            false => response
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_vec()
                .unwrap_or_default(),
        };
        Resp {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
            headers,
        }
    }

    /// `GET path` with a key.
    pub fn get(&self, path: &str, key: Option<&str>) -> Resp {
        self.send("GET", path, key, None, &[])
    }

    /// `GET path` with a key, asserting 200; the JSON.
    pub fn get_ok(&self, path: &str, key: Option<&str>) -> Value {
        let reply = self.get(path, key);
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        reply.json()
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Resp {
        let bytes = serde_json::to_vec(body).expect("json");
        self.send("POST", path, key, Some(&bytes), &[])
    }
}

/// The common [`Server`](common::Server) with a client that sends API keys.
pub struct AuthServer {
    server: common::Server,
    pub api: Api,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl AuthServer {
    /// Starts `convlog serve` on 127.0.0.1:0 with data in `<root>/data`, log in `<root>/server.log`.
    pub fn start(root: &Path, extra: &[&str], log_level: &str) -> AuthServer {
        let server = common::Server::start_with_log_level(root, extra, log_level);
        AuthServer {
            api: Api {
                agent: common::agent(),
                base: server.base().to_string(),
            },
            data_dir: server.data_dir().to_path_buf(),
            log: server.log_path().to_path_buf(),
            server,
        }
    }

    /// The last lines of the server log.
    pub fn log_tail(&self) -> String {
        self.server.log_tail()
    }

    /// The server's pid (for `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// `--data-dir DIR` as CLI arguments.
    pub fn data_dir_str(&self) -> String {
        self.data_dir.display().to_string()
    }

    /// Waits until the index has caught up with the store (`/metrics` with `key`).
    pub fn wait_indexed(&self, key: Option<&str>) {
        let started = Instant::now();
        loop {
            let reply = self.api.get("/metrics", key);
            assert_eq!(reply.status, 200, "/metrics: {}", reply.body);
            if common::metric_value(&reply.body, "convlog_index_lag") == Some(0.0) {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the index did not catch up\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ingests messages with `key`, asserting 200.
    pub fn ingest(&self, key: Option<&str>, messages: &[GenMessage]) {
        let reply = self.api.post("/v1/messages", key, &json!(messages));
        assert_eq!(reply.status, 200, "ingest: {}", reply.body);
    }

    /// SIGTERM and wait (a clean shutdown: the WAL is checkpointed, logs flushed).
    pub fn terminate(&mut self) {
        self.server.terminate();
    }
}

/// `convlog keys create`: the printed key.
pub fn cli_create_key(data_dir: &str, role: &str, bots: &str, name: &str) -> String {
    let (status, stdout, stderr) = run_cli(
        &[
            "keys",
            "create",
            "--role",
            role,
            "--bots",
            bots,
            "--name",
            name,
            "--data-dir",
            data_dir,
        ],
        None,
    );
    assert!(status.success(), "keys create: {stderr}");
    let key = String::from_utf8(stdout).expect("utf-8").trim().to_string();
    assert!(
        convlog_engine::auth::parse_key(&key).is_some(),
        "keys create printed {key:?}"
    );
    key
}

/// The id part of `clk_<id>_<secret>`.
pub fn key_id(key: &str) -> String {
    convlog_engine::auth::parse_key(key)
        .expect("a key")
        .0
        .to_string()
}

/// The secret part of `clk_<id>_<secret>`.
pub fn key_secret(key: &str) -> String {
    convlog_engine::auth::parse_key(key)
        .expect("a key")
        .1
        .to_string()
}

/// `POST /v1/admin/keys` with `admin`: the new key.
pub fn api_create_key(api: &Api, admin: &str, role: &str, bots: Value, name: &str) -> String {
    let reply = api.post(
        "/v1/admin/keys",
        Some(admin),
        &json!({"name": name, "role": role, "bots": bots}),
    );
    assert_eq!(reply.status, 201, "create key: {}", reply.body);
    reply.json()["key"].as_str().expect("key").to_string()
}

/// Conversation ids of `bot` over all time, newest first.
pub fn conversation_ids(api: &Api, key: &str, bot: &str) -> Vec<String> {
    let page = api.get_ok(
        &format!("/v1/bots/{bot}/conversations?from={ALL_FROM}&to={ALL_TO}&limit=100"),
        Some(key),
    );
    page["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_string())
        .collect()
}

/// A small data set for bots `a` and `b` (same user ids on both): three conversations each.
pub fn two_bot_messages() -> Vec<GenMessage> {
    let mut out = Vec::new();
    for (bot, word) in [("a", "alphaword"), ("b", "zebrafoo")] {
        for c in 0..3 {
            for n in 0..3 {
                let at = format!("2026-11-1{}T1{}:0{n}:00Z", c + 1, c);
                let mut m = message(
                    &format!("{bot}msg-{c}-{n}"),
                    bot,
                    &format!("shared-user-{c}"),
                    &format!("{word} hello number {n}"),
                    &at,
                );
                m.channel = format!("{bot}chan");
                if n == 1 {
                    m.role = "bot".into();
                    m.flow = Some(format!("{bot}-flow"));
                    m.step = Some(format!("{bot}-step"));
                    m.node_id = Some(format!("n-{bot}-node"));
                    m.node_type = Some("prompt".into());
                    m.node_name = Some(format!("{bot} node name"));
                    m.unidentified = Some(true);
                }
                out.push(m);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The policy table.

/// Who calls: no key, a key that does not exist, or a key of a role with scope `*` or `a`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    NoKey,
    Bogus,
    Key { role: Role, all: bool },
}

impl Who {
    fn label(self) -> String {
        match self {
            Who::NoKey => "no key".into(),
            Who::Bogus => "unknown key".into(),
            Who::Key { role, all } => {
                format!("{}[{}]", role.as_str(), if all { "*" } else { "a" })
            }
        }
    }
}

/// What the guard must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Allow,
    Refuse(u16, &'static str),
}

/// The expected outcome, from guard.rs: public → allowed; no or unknown key → 401; role
/// too low → 403 (checked first); `{bot}` outside the scope → 404; admin routes without
/// `{bot}` need scope `*` → 403.
fn expected(policy: Policy, who: Who, bot: Option<&str>) -> Expect {
    if policy == Policy::Public {
        return Expect::Allow;
    }
    let (role, all) = match who {
        Who::NoKey | Who::Bogus => return Expect::Refuse(401, "unauthorized"),
        Who::Key { role, all } => (role, all),
    };
    if !role.allows(policy) {
        return Expect::Refuse(403, "forbidden");
    }
    match bot {
        Some(bot) if !all && bot != "a" => Expect::Refuse(404, "not_found"),
        None if policy == Policy::Admin && !all => Expect::Refuse(403, "forbidden"),
        _ => Expect::Allow,
    }
}

/// Fixture of the table test: keys of every role with scope `*` and `a`, ids of both bots.
struct Matrix {
    api: Api,
    keys: BTreeMap<(&'static str, bool), String>,
    admin: String,
    conversation: BTreeMap<&'static str, String>,
    live_token: String,
    job_id: String,
    counter: u64,
}

const ROLES: [Role; 4] = [Role::Viewer, Role::Editor, Role::Ingest, Role::Admin];

impl Matrix {
    fn key(&self, who: Who) -> Option<String> {
        match who {
            Who::NoKey => None,
            Who::Bogus => Some("clk_0123456789abcdef_notARealSecretAtAll".into()),
            Who::Key { role, all } => Some(self.keys[&(role.as_str(), all)].clone()),
        }
    }

    fn share(&self, bot: &str) -> String {
        let id = &self.conversation[bot];
        let reply = self.api.send(
            "POST",
            &format!("/v1/bots/{bot}/conversations/{id}/share"),
            Some(&self.admin),
            None,
            &[],
        );
        assert_eq!(reply.status, 200, "share: {}", reply.body);
        reply.json()["token"].as_str().expect("token").to_string()
    }

    /// The concrete path and body of `route` for `bot`, creating what it needs.
    fn fill(&mut self, method: &str, pattern: &str, bot: &str) -> (String, Option<Vec<u8>>) {
        self.counter += 1;
        let n = self.counter;
        let mut path = pattern.replace("{bot}", bot);
        if path.contains("/shares/{token}") {
            path = path.replace("{token}", &self.share(bot));
        }
        path = path.replace("{token}", &self.live_token);
        if path.starts_with("/v1/admin/keys/") {
            let throwaway = api_create_key(&self.api, &self.admin, "viewer", json!(["a"]), "tmp");
            path = path.replace("{id}", &key_id(&throwaway));
        }
        if path.starts_with("/v1/admin/jobs/") {
            path = path.replace("{id}", &self.job_id);
        }
        path = path.replace("{id}", &self.conversation[bot]);
        path = path.replace("{label}", "matrixlabel");
        path = path.replace("{action}", "1");
        path = path.replace("{source}", "nats:convlog:none");
        path = path.replace("{*rest}", "conversations/c_1");
        path = path.replace("{*file}", "app.css");
        assert!(!path.contains('{'), "no value for a parameter of {pattern}");
        let body = match (method, pattern) {
            ("POST", "/v1/messages") => Some(json!([message(
                &format!("matrix-{n}"),
                "a",
                "matrix-user",
                "matrix text",
                "2026-11-18T09:00:00Z"
            )])),
            ("POST", "/v1/traces") => Some(json!([{
                "bot_id": "a", "user_id": "matrix-user", "channel": "web",
                "timestamp": "2026-11-18T09:00:01Z", "action": "matrix"
            }])),
            ("POST", "/otlp/v1/traces") => Some(json!({"resourceSpans": [{
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "a"}}]},
                "scopeSpans": [{"spans": [{
                    "traceId": format!("{n:032x}"), "spanId": "00f067aa0ba902b7", "name": "step",
                    "startTimeUnixNano": "1763456401000000000", "endTimeUnixNano": "1763456402000000000",
                    "attributes": [{"key": "user.id", "value": {"stringValue": "matrix-user"}}]
                }]}]
            }]})),
            ("POST", "/v1/ingest/rasa") => {
                path = format!("{path}?bot=a");
                Some(json!({"sender_id": "matrix-user", "event": "user",
                            "timestamp": 1763456400.0 + n as f64, "text": "matrix"}))
            }
            ("POST", p) if p.ends_with("/bulk") => {
                path = format!("{path}?from={ALL_FROM}&to={ALL_TO}");
                Some(json!({"add_labels": ["bulklabel"], "dry_run": true}))
            }
            ("POST", "/v1/admin/keys") => {
                Some(json!({"name": "matrix", "role": "viewer", "bots": ["a"]}))
            }
            ("POST", "/v1/admin/restore") => Some(
                json!({"bot_id": "a", "from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00Z"}),
            ),
            ("POST", "/v1/admin/erase") => {
                Some(json!({"bot_id": "a", "user_id": "nobody-of-the-matrix"}))
            }
            ("POST", p) if p.ends_with("/share") => Some(json!({"ttl": "1d"})),
            ("PUT", p) if p.ends_with("/flag") => Some(json!({"note": "matrix"})),
            _ => None,
        };
        if method == "GET" && path.starts_with("/v1/bots/") && !path.contains("/debug") {
            let sep = if path.contains('?') { '&' } else { '?' };
            if !path.contains("/conversations/") {
                path = format!("{path}{sep}from={ALL_FROM}&to={ALL_TO}");
            }
        }
        (path, body.map(|b| serde_json::to_vec(&b).expect("json")))
    }
}

/// Statuses a permitted request may get besides 2xx.
fn also_fine(method: &str, pattern: &str, status: u16) -> bool {
    // Cancelling a job that already finished is a conflict, not a refusal;
    // so is undoing a bulk action undone already, or one the bot never had.
    method == "POST"
        && match pattern {
            "/v1/admin/jobs/{id}/cancel" => status == 409,
            "/v1/bots/{bot}/conversations/bulk/{action}/undo" => matches!(status, 404 | 409),
            _ => false,
        }
}

/// Acceptance 1: routes() × {no key, unknown key, every role with scope `*` and `a`} ×
/// {own bot, other bot}: 0 mismatches with the policy table; every permitted change is
/// audited with its key, action, bot and request id, and nothing else is.
#[test]
fn every_route_every_role_every_bot_matches_the_policy_table() {
    let started = Instant::now();
    let root = tempfile::tempdir().expect("tempdir");
    let server = AuthServer::start(root.path(), &["--set", "auth.rate_limit=0"], "warn");
    let api = server.api.clone();
    // Open mode (no key yet): everything is accepted on loopback.
    server.ingest(None, &two_bot_messages());
    server.wait_indexed(None);
    let dir = server.data_dir_str();
    let mut keys = BTreeMap::new();
    for role in ROLES {
        for all in [true, false] {
            let bots = if all { "*" } else { "a" };
            let key = cli_create_key(&dir, role.as_str(), bots, "matrix");
            keys.insert((role.as_str(), all), key);
        }
    }
    let admin = keys[&("admin", true)].clone();
    // Keys exist now: no key is 401 at once.
    assert_eq!(api.get("/v1/bots/a/tags", None).status, 401);
    let conversation: BTreeMap<&'static str, String> = ["a", "b"]
        .into_iter()
        .map(|bot| (bot, conversation_ids(&api, &admin, bot)[0].clone()))
        .collect();
    let job = api.send("POST", "/v1/admin/tagging", Some(&admin), None, &[]);
    assert_eq!(job.status, 202, "tagging: {}", job.body);
    let mut matrix = Matrix {
        api: api.clone(),
        keys,
        admin: admin.clone(),
        conversation,
        live_token: String::new(),
        job_id: job.json()["id"].as_str().expect("job id").to_string(),
        counter: 0,
    };
    matrix.live_token = matrix.share("a");

    let mut mismatches = Vec::new();
    let mut requests = 0;
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    // request id → (action, key id, bot) of permitted changes; request ids of everything else.
    let mut audited: BTreeMap<String, (String, Option<String>, Option<String>)> = BTreeMap::new();
    let mut not_audited = BTreeSet::new();
    let table = routes();
    for route in &table {
        let method = route.method.as_str();
        let pattern = route.path;
        let has_bot = pattern.contains("{bot}");
        let mut cases: Vec<(Who, Option<&str>)> = vec![
            (Who::NoKey, has_bot.then_some("a")),
            (Who::Bogus, has_bot.then_some("a")),
        ];
        for role in ROLES {
            if has_bot {
                cases.push((Who::Key { role, all: false }, Some("a")));
                cases.push((Who::Key { role, all: false }, Some("b")));
                cases.push((Who::Key { role, all: true }, Some("b")));
            } else {
                cases.push((Who::Key { role, all: true }, None));
                cases.push((Who::Key { role, all: false }, None));
            }
        }
        for (who, bot) in cases {
            let expect = expected(route.policy, who, bot);
            let (path, body) = matrix.fill(method, pattern, bot.unwrap_or("a"));
            let key = matrix.key(who);
            requests += 1;
            let request_id = format!("matrix-{requests}");
            let reply = api.send(
                method,
                &path,
                key.as_deref(),
                body.as_deref(),
                &[("x-request-id", &request_id)],
            );
            *outcomes
                .entry(match expect {
                    Expect::Allow => "allowed".to_string(),
                    Expect::Refuse(status, _) => status.to_string(),
                })
                .or_default() += 1;
            let ok = match expect {
                Expect::Allow => {
                    (200..300).contains(&reply.status) || also_fine(method, pattern, reply.status)
                }
                Expect::Refuse(status, code) => reply.status == status && reply.code() == code,
            };
            if !ok {
                mismatches.push(format!(
                    "{method} {path} | {:?} | {} | bot {} | expected {expect:?} | got {} {}",
                    route.policy,
                    who.label(),
                    bot.unwrap_or("-"),
                    reply.status,
                    reply.body.chars().take(160).collect::<String>()
                ));
            }
            if reply.header("x-request-id") != Some(request_id.as_str()) {
                mismatches.push(format!(
                    "{method} {path}: x-request-id {:?}, sent {request_id}",
                    reply.header("x-request-id")
                ));
            }
            let is_audited = method != "GET"
                && !matches!(route.policy, Policy::Ingest | Policy::Public)
                && (200..300).contains(&reply.status);
            if is_audited {
                audited.insert(
                    request_id,
                    (
                        format!("{method} {pattern}"),
                        key.as_deref().map(key_id),
                        bot.map(str::to_string),
                    ),
                );
            } else {
                not_audited.insert(request_id);
            }
        }
    }
    println!(
        "policy table: {} routes, {requests} requests (expected {outcomes:?}), {} mismatches",
        table.len(),
        mismatches.len()
    );
    for line in &mismatches {
        println!("MISMATCH {line}");
    }

    // The audit log: every permitted change, with who, what and where; nothing else.
    let entries = api.get_ok("/v1/admin/audit?limit=1000", Some(&admin))["entries"]
        .as_array()
        .expect("entries")
        .clone();
    let mut audit_problems = Vec::new();
    // A request's own entry is its newest: an erasure's entry saying which
    // user (same request id) is written before it, by the handler.
    let mut by_request: BTreeMap<String, &Value> = BTreeMap::new();
    for entry in &entries {
        let request_id = entry["request_id"].as_str().unwrap_or("").to_string();
        by_request.entry(request_id).or_insert(entry);
    }
    for (request_id, (action, key, bot)) in &audited {
        match by_request.get(request_id) {
            None => audit_problems.push(format!("{request_id} ({action}) is not in the audit")),
            Some(entry) => {
                let got = (
                    entry["action"].as_str().map(str::to_string),
                    entry["key_id"].as_str().map(str::to_string),
                    entry["bot_id"].as_str().map(str::to_string),
                );
                if got != (Some(action.clone()), key.clone(), bot.clone()) {
                    audit_problems.push(format!(
                        "{request_id}: audit says {got:?}, expected ({action}, {key:?}, {bot:?})"
                    ));
                }
                let target = entry["target"].as_str().unwrap_or("");
                if target.contains(&matrix.live_token)
                    || (target.contains("/shares/") && !target.ends_with("/shares/…"))
                {
                    audit_problems.push(format!("{request_id}: share token in target {target}"));
                }
            }
        }
    }
    // Refused access is audited as a refusal (rate-limited, issue #13); reads,
    // ingest and the router's own 4xx are not.
    for request_id in &not_audited {
        if let Some(entry) = by_request.get(request_id) {
            let refusal = entry["action"]
                .as_str()
                .is_some_and(|action| action.starts_with("refused "))
                && entry["status"].as_u64().is_some_and(|status| status >= 400);
            if !refusal {
                audit_problems.push(format!(
                    "{request_id} was a read, an ingest or refused, yet audited as {entry}"
                ));
            }
        }
    }
    for line in &audit_problems {
        println!("AUDIT {line}");
    }
    println!(
        "audit: {} permitted changes checked, {} other requests; took {:.1}s",
        audited.len(),
        not_audited.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches with the policy table:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert!(audit_problems.is_empty(), "{}", audit_problems.join("\n"));
}

/// The expected table itself, spelled out for the precedence questions of the brief.
#[test]
fn the_policy_table_encodes_role_before_scope() {
    let viewer_a = Who::Key {
        role: Role::Viewer,
        all: false,
    };
    // A viewer of bot a asking to PUT a label on bot b: the role check comes first.
    assert_eq!(
        expected(Policy::Edit, viewer_a, Some("b")),
        Expect::Refuse(403, "forbidden")
    );
    assert_eq!(
        expected(Policy::Read, viewer_a, Some("b")),
        Expect::Refuse(404, "not_found")
    );
    let admin_a = Who::Key {
        role: Role::Admin,
        all: false,
    };
    assert_eq!(
        expected(Policy::Admin, admin_a, None),
        Expect::Refuse(403, "forbidden")
    );
    assert_eq!(expected(Policy::Edit, admin_a, Some("a")), Expect::Allow);
    assert_eq!(expected(Policy::Public, Who::Bogus, None), Expect::Allow);
    assert_eq!(
        expected(Policy::Ingest, Who::NoKey, None),
        Expect::Refuse(401, "unauthorized")
    );
}

/// Acceptance 7: keys made and revoked through the CLI and through the admin endpoint
/// stop working at the very next request; lists never show secrets.
#[test]
fn revoked_keys_stop_working_at_once_through_cli_and_admin_endpoint() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = AuthServer::start(root.path(), &["--set", "auth.rate_limit=0"], "warn");
    let api = &server.api;
    server.ingest(None, &two_bot_messages());
    let dir = server.data_dir_str();
    let admin = cli_create_key(&dir, "admin", "*", "root");
    let tags = "/v1/bots/a/tags";

    // CLI create → works; CLI revoke (server running) → 401 on the next request.
    let viewer = cli_create_key(&dir, "viewer", "a", "cli-viewer");
    assert_eq!(api.get(tags, Some(&viewer)).status, 200);
    let (status, _, stderr) = run_cli(
        &["keys", "revoke", &key_id(&viewer), "--data-dir", &dir],
        None,
    );
    assert!(status.success(), "keys revoke: {stderr}");
    let reply = api.get(tags, Some(&viewer));
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (401, "unauthorized"),
        "revoked by CLI: {}",
        reply.body
    );

    // Admin endpoint create → works; DELETE → 401 on the next request.
    let editor = api_create_key(api, &admin, "editor", json!(["a", "b"]), "api-editor");
    assert_eq!(api.get("/v1/bots/b/tags", Some(&editor)).status, 200);
    let reply = api.send(
        "DELETE",
        &format!("/v1/admin/keys/{}", key_id(&editor)),
        Some(&admin),
        None,
        &[],
    );
    assert_eq!(reply.status, 200, "revoke: {}", reply.body);
    assert!(reply.json()["revoked_at"].is_string(), "{}", reply.body);
    assert_eq!(api.get(tags, Some(&editor)).status, 401);

    // Revoked by the CLI, made by the endpoint, and the other way round.
    let ingest = api_create_key(api, &admin, "ingest", json!("*"), "api-ingest");
    let msg = json!([message("rv-1", "a", "u", "x", "2026-11-18T09:00:00Z")]);
    assert_eq!(api.post("/v1/messages", Some(&ingest), &msg).status, 200);
    let (status, _, stderr) = run_cli(
        &["keys", "revoke", &key_id(&ingest), "--data-dir", &dir],
        None,
    );
    assert!(status.success(), "{stderr}");
    assert_eq!(api.post("/v1/messages", Some(&ingest), &msg).status, 401);
    let cli_admin = cli_create_key(&dir, "admin", "*", "second-admin");
    assert_eq!(api.get("/v1/admin/keys", Some(&cli_admin)).status, 200);
    let reply = api.send(
        "DELETE",
        &format!("/v1/admin/keys/{}", key_id(&cli_admin)),
        Some(&admin),
        None,
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(api.get("/v1/admin/keys", Some(&cli_admin)).status, 401);

    // A key with a wrong secret, a malformed header and a key of the right id with the
    // secret of another: 401.
    let forged = format!("clk_{}_{}", key_id(&admin), key_secret(&viewer));
    for bad in [
        forged.as_str(),
        "clk_",
        "nonsense",
        &admin[..admin.len() - 1],
    ] {
        assert_eq!(api.get(tags, Some(bad)).status, 401, "key {bad:?}");
    }
    let basic = api.send(
        "GET",
        tags,
        None,
        None,
        &[("Authorization", &format!("Basic {admin}"))],
    );
    assert_eq!(basic.status, 401);

    // Revoking an unknown key: 404; revoking twice keeps the first time.
    let reply = api.send(
        "DELETE",
        "/v1/admin/keys/0000000000000000",
        Some(&admin),
        None,
        &[],
    );
    assert_eq!(reply.status, 404, "{}", reply.body);

    // Lists show every key with its state, never a secret.
    let list = api.get_ok("/v1/admin/keys", Some(&admin));
    let text = list.to_string();
    let listed: BTreeMap<String, Value> = list["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| (k["id"].as_str().unwrap_or("").to_string(), k.clone()))
        .collect();
    for (key, revoked) in [
        (&admin, false),
        (&viewer, true),
        (&editor, true),
        (&ingest, true),
        (&cli_admin, true),
    ] {
        let entry = &listed[&key_id(key)];
        assert_eq!(entry["revoked_at"].is_string(), revoked, "{entry}");
        assert!(
            !text.contains(&key_secret(key)),
            "secret in GET /v1/admin/keys"
        );
    }
    let (status, stdout, _) = run_cli(&["keys", "list", "--data-dir", &dir], None);
    assert!(status.success());
    let stdout = String::from_utf8_lossy(&stdout);
    for key in [&admin, &viewer, &editor, &ingest] {
        assert!(stdout.contains(&key_id(key)), "keys list: {stdout}");
        assert!(!stdout.contains(&key_secret(key)), "secret in keys list");
    }
    // Bad arguments are refused by both, and create nothing.
    let keys_before = api.get_ok("/v1/admin/keys", Some(&admin));
    for body in [
        json!({"role": "root", "bots": "*"}),
        json!({"role": "viewer", "bots": []}),
        json!({"role": "viewer", "bots": "a b"}),
        // A scope is "*" or a list: a free string is not parsed.
        json!({"role": "viewer", "bots": "a"}),
        json!({"role": "viewer", "bots": ["a", ""]}),
        json!({"role": "viewer", "bots": [1]}),
        json!({"role": "viewer", "bots": "*", "extra": 1}),
        // serde alone would take the struct from an array of its fields.
        json!(["mine", "admin", "*"]),
    ] {
        let reply = api.post("/v1/admin/keys", Some(&admin), &body);
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
    }
    assert_eq!(api.get_ok("/v1/admin/keys", Some(&admin)), keys_before);
    let (status, _, _) = run_cli(
        &[
            "keys",
            "create",
            "--role",
            "root",
            "--bots",
            "*",
            "--data-dir",
            &dir,
        ],
        None,
    );
    assert!(!status.success());
}

/// Open mode: with no active key everything is accepted, on loopback only; the first key
/// ends it at the next request; revoking the last key brings it back (documented: "with no
/// key at all the service accepts every request"); a non-loopback address without a key is
/// refused at start.
#[test]
fn open_mode_only_without_keys_and_only_on_loopback() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut server = AuthServer::start(root.path(), &[], "warn");
    let api = server.api.clone();
    // No key at all: open.
    assert_eq!(api.get("/v1/admin/keys", None).status, 200);
    assert_eq!(api.get("/v1/bots/a/tags", None).status, 200);
    // A key presented in open mode is still checked.
    assert_eq!(
        api.get("/v1/bots/a/tags", Some("clk_0123456789abcdef_x"))
            .status,
        401
    );
    let dir = server.data_dir_str();
    let admin = cli_create_key(&dir, "admin", "*", "first");
    // From the next request on, nothing without a key.
    for path in ["/v1/admin/keys", "/v1/bots/a/tags", "/metrics"] {
        let reply = api.get(path, None);
        assert_eq!(
            (reply.status, reply.code()),
            (401, "unauthorized".into()),
            "{path}"
        );
    }
    for path in ["/healthz", "/readyz", "/v1/openapi.json"] {
        assert_eq!(api.get(path, None).status, 200, "{path}");
    }
    // Revoking the only key reopens the loopback server (pinned, see the report).
    let (status, _, stderr) = run_cli(
        &["keys", "revoke", &key_id(&admin), "--data-dir", &dir],
        None,
    );
    assert!(status.success(), "{stderr}");
    assert_eq!(api.get("/v1/bots/a/tags", Some(&admin)).status, 401);
    assert_eq!(api.get("/v1/bots/a/tags", None).status, 200);
    server.terminate();

    // Listening on a non-loopback address: refused without keys, served with one.
    let fresh = tempfile::tempdir().expect("tempdir");
    let data = fresh.path().join("data");
    let (status, stdout, stderr) = serve_briefly(&data, "0.0.0.0:0");
    assert!(
        status.is_some_and(|s| !s.success()) && !stdout.contains("listening"),
        "served on 0.0.0.0 without keys: {stdout} {stderr}"
    );
    assert!(
        stderr.contains("refusing to listen") && stderr.contains("keys"),
        "no reason given: {stderr}"
    );
    let data_dir = data.display().to_string();
    cli_create_key(&data_dir, "viewer", "a", "only");
    let (_, stdout, stderr) = serve_briefly(&data, "0.0.0.0:0");
    assert!(
        stdout.contains("convlog listening on"),
        "with a key it should serve: {stdout} {stderr}"
    );
}

/// Starts `convlog serve` on `listen`; gives it a few seconds, then stops it.
/// Returns (exit status if it exited by itself, stdout, stderr).
fn serve_briefly(data: &Path, listen: &str) -> (Option<std::process::ExitStatus>, String, String) {
    let mut child = Command::new(common::binary())
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(data)
        .env("CONVLOG_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(&mut stdout).read_line(&mut line);
        line
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let started = Instant::now();
    let mut exited = None;
    while started.elapsed() < Duration::from_secs(30) {
        exited = child.try_wait().ok().flatten();
        if exited.is_some() {
            break;
        }
        // Serving: the first line was printed and the process stays up.
        if out.is_finished() {
            std::thread::sleep(Duration::from_millis(200));
            exited = child.try_wait().ok().flatten();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Kills it if it still runs; reaps it either way.
    let _ = child.kill();
    let _ = child.wait();
    (
        exited,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

/// Acceptance 7: past `rate_limit`/`rate_burst` a key gets 429 `rate_limited` with
/// Retry-After; other keys are not affected; after Retry-After it works again.
#[test]
fn rate_limit_answers_429_with_retry_after_per_key() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = AuthServer::start(
        root.path(),
        &["--set", "auth.rate_limit=5", "--set", "auth.rate_burst=5"],
        "warn",
    );
    let api = &server.api;
    let dir = server.data_dir_str();
    let first = cli_create_key(&dir, "viewer", "a", "first");
    let second = cli_create_key(&dir, "viewer", "*", "second");
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..20 {
        let reply = api.get("/v1/bots/a/tags", Some(&first));
        statuses.push(reply.status);
        if reply.status == 429 {
            limited = Some(reply);
            break;
        }
    }
    let limited = limited.unwrap_or_else(|| panic!("never limited: {statuses:?}"));
    assert!(
        statuses.len() >= 5,
        "limited before the burst of 5: {statuses:?}"
    );
    assert_eq!(limited.code(), "rate_limited", "{}", limited.body);
    let retry: u64 = limited
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", limited.headers))
        .parse()
        .expect("Retry-After is whole seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // Another key has its own bucket; public routes are not limited.
    assert_eq!(api.get("/v1/bots/a/tags", Some(&second)).status, 200);
    for _ in 0..10 {
        assert_eq!(api.get("/healthz", Some(&first)).status, 200);
    }
    std::thread::sleep(Duration::from_secs(retry));
    let reply = api.get("/v1/bots/a/tags", Some(&first));
    assert_eq!(reply.status, 200, "after Retry-After: {}", reply.body);
}

/// HEAD is answered by the GET handlers (axum serves HEAD with a route's GET handler);
/// the guard must check it like the GET it runs: no key → 401, another bot → 404.
#[test]
fn head_requests_are_checked_like_the_get_they_run() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = AuthServer::start(root.path(), &["--set", "auth.rate_limit=0"], "warn");
    let api = &server.api;
    server.ingest(None, &two_bot_messages());
    server.wait_indexed(None);
    let dir = server.data_dir_str();
    let admin = cli_create_key(&dir, "admin", "*", "admin");
    let viewer_a = cli_create_key(&dir, "viewer", "a", "viewer-a");
    let b_id = conversation_ids(api, &admin, "b")[0].clone();
    let mut problems = Vec::new();
    for route in routes() {
        if route.method != "GET" || route.policy == Policy::Public {
            continue;
        }
        let path = route
            .path
            .replace("{bot}", "b")
            .replace("{id}", &b_id)
            .replace("{token}", "x");
        for (who, key) in [("no key", None), ("viewer[a]", Some(viewer_a.as_str()))] {
            let get = api.send("GET", &path, key, None, &[]);
            let head = api.send("HEAD", &path, key, None, &[]);
            if head.status != get.status {
                problems.push(format!(
                    "HEAD {path} ({who}): {} {:?}, but GET: {}",
                    head.status,
                    head.header("content-length"),
                    get.status
                ));
            }
        }
    }
    // What a caller without any key learns: a full-text oracle over b's messages.
    let length = |q: &str| {
        let path = format!("/v1/bots/b/messages?from={ALL_FROM}&to={ALL_TO}&q={q}");
        let reply = api.send("HEAD", &path, None, None, &[]);
        (
            reply.status,
            reply.header("content-length").map(str::to_string),
        )
    };
    let (hit, miss) = (length("zebrafoo"), length("nosuchword"));
    if hit != miss {
        problems.push(format!(
            "HEAD /v1/bots/b/messages?q=… without a key: q=zebrafoo → {hit:?}, q=nosuchword → {miss:?}"
        ));
    }
    for line in &problems {
        println!("HEAD {line}");
    }
    assert!(
        problems.is_empty(),
        "{} HEAD requests bypass the guard:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
