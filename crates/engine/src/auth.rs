//! Access control: API keys with a role and a set of bots, and the policy each route demands.
//!
//! A key looks like `clk_<id>_<secret>`. Only the SHA-256 of the secret is
//! stored; the id finds the row and the hashes are compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Search and read.
    Viewer,
    /// Also labels, flags, debug switch, share links, bulk actions.
    Editor,
    /// Only `POST /v1/messages` and `/v1/traces`: for bot runtimes.
    Ingest,
    /// Everything, jobs and keys included.
    Admin,
}

impl Role {
    /// Parses `viewer`, `editor`, `ingest` or `admin`.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "ingest" => Some(Role::Ingest),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Ingest => "ingest",
            Role::Admin => "admin",
        }
    }

    /// Whether this role satisfies `policy`.
    pub fn allows(self, policy: Policy) -> bool {
        match policy {
            Policy::Public => true,
            Policy::Ingest => matches!(self, Role::Ingest | Role::Admin),
            Policy::Read => matches!(self, Role::Viewer | Role::Editor | Role::Admin),
            Policy::Edit => matches!(self, Role::Editor | Role::Admin),
            Policy::Admin => self == Role::Admin,
        }
    }
}

/// The minimum a route demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// No key needed (health, API description, share links).
    Public,
    /// An ingest or admin key.
    Ingest,
    /// A viewer, editor or admin key.
    Read,
    /// An editor or admin key.
    Edit,
    /// An admin key; routes without a bot in the path also need the `*` scope.
    Admin,
}

/// The bots a key may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Bots(Vec<String>),
}

impl Scope {
    /// Parses `*` or a comma-separated list of bot ids.
    pub fn parse(text: &str) -> Result<Scope, String> {
        let text = text.trim();
        if text == "*" {
            return Ok(Scope::All);
        }
        let bots: Vec<String> = text
            .split(',')
            .map(|bot| bot.trim().to_string())
            .filter(|bot| !bot.is_empty())
            .collect();
        if bots.is_empty() {
            return Err("name at least one bot, or *".into());
        }
        if let Some(bad) = bots.iter().find(|bot| !convlog_core::is_identifier(bot)) {
            return Err(format!("{bad:?} is not a bot id"));
        }
        Ok(Scope::Bots(bots))
    }

    /// Whether `bot` is in scope.
    pub fn includes(&self, bot: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Bots(bots) => bots.iter().any(|b| b == bot),
        }
    }

    /// The stored form.
    pub fn to_text(&self) -> String {
        match self {
            Scope::All => "*".into(),
            Scope::Bots(bots) => bots.join(","),
        }
    }
}

/// What revoking the last key means, said by the server's log, the API and the CLI.
pub const OPEN_MODE_WARNING: &str = "no active API keys remain, so the server is in open mode \
     again: on a loopback address it answers every local request without a key; elsewhere it \
     refuses every request until a key is created (`convlog keys create`)";

/// A request for a new key, validated: the same rules through the API and the CLI.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRequest {
    pub role: Role,
    pub scope: Scope,
    pub name: String,
}

impl KeyRequest {
    /// Longest key name, in characters.
    pub const MAX_KEY_NAME: usize = 200;

    /// Validates a role name, a scope (`*` or comma-separated bots) and a
    /// name; `Err((field, reason))` names what is wrong.
    pub fn new(role: &str, bots: &str, name: String) -> Result<KeyRequest, (&'static str, String)> {
        let role = Role::parse(role).ok_or((
            "role",
            "must be viewer, editor, ingest or admin".to_string(),
        ))?;
        let scope = Scope::parse(bots).map_err(|reason| ("bots", reason))?;
        if name.chars().count() > Self::MAX_KEY_NAME {
            let reason = format!("at most {} characters", Self::MAX_KEY_NAME);
            return Err(("name", reason));
        }
        Ok(KeyRequest { role, scope, name })
    }
}

/// A key as stored (without its secret).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub scope: Scope,
    pub secret_hash: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A freshly made key: the full text is shown once and never stored.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: String,
    pub key: String,
    pub secret_hash: String,
}

fn random(bytes: usize) -> Vec<u8> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).expect("the OS random source works");
    buffer
}

/// SHA-256 of a secret, hex.
pub fn hash_secret(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Makes a new key: 64-bit id, 256-bit secret.
pub fn new_key() -> NewKey {
    let id: String = random(8).iter().map(|b| format!("{b:02x}")).collect();
    let secret = URL_SAFE_NO_PAD.encode(random(32));
    NewKey {
        key: format!("clk_{id}_{secret}"),
        secret_hash: hash_secret(&secret),
        id,
    }
}

/// Splits `clk_<id>_<secret>` into id and secret.
pub fn parse_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("clk_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty())
        .then_some((id, secret))
}

/// Compares two strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.bytes()
        .zip(b.bytes())
        .fold(0u8, |diff, (x, y)| diff | (x ^ y))
        == 0
}

/// A token bucket per key: `rate` requests a second, bursts of `burst`.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter; `rate` 0 disables it.
    pub fn new(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            rate,
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s bucket; `Err(seconds)` says when to retry.
    pub fn take(&self, key: &str) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        let (tokens, last) = buckets.entry(key.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

/// Request bodies in memory, bounded per API key: one key's uploads (slow or
/// stalled ones included) wait on its own budget and never on another key's.
/// Open mode (no key) counts as one key.
pub struct BodyBudgets {
    kib_per_key: u32,
    budgets: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

impl BodyBudgets {
    /// Budgets of `bytes_per_key` each.
    pub fn new(bytes_per_key: usize) -> BodyBudgets {
        BodyBudgets {
            kib_per_key: (bytes_per_key as u64).div_ceil(1024).min(u32::MAX as u64) as u32,
            budgets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `bytes` from `key`'s budget, waiting until `deadline` at most;
    /// `None` when the key's earlier uploads still hold it then.
    pub async fn acquire(
        &self,
        key: Option<&str>,
        bytes: u64,
        deadline: tokio::time::Instant,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let budget = self
            .budgets
            .lock()
            .expect("body budgets lock")
            .entry(key.unwrap_or("").to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.kib_per_key as usize)))
            .clone();
        let kib = (bytes.div_ceil(1024).max(1)).min(self.kib_per_key as u64) as u32;
        tokio::time::timeout_at(deadline, budget.acquire_many_owned(kib))
            .await
            .ok()
            .and_then(Result::ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_hash() {
        let key = new_key();
        let (id, secret) = parse_key(&key.key).unwrap();
        assert_eq!(id, key.id);
        assert!(constant_time_eq(&hash_secret(secret), &key.secret_hash));
        assert!(parse_key("clk_zz_abc").is_none());
        assert!(parse_key("Bearer x").is_none());
    }

    #[test]
    fn roles_follow_the_policy_table() {
        assert!(Role::Viewer.allows(Policy::Read));
        assert!(!Role::Viewer.allows(Policy::Edit));
        assert!(!Role::Ingest.allows(Policy::Read));
        assert!(Role::Ingest.allows(Policy::Ingest));
        assert!(!Role::Editor.allows(Policy::Ingest));
        assert!(Role::Admin.allows(Policy::Admin));
        assert!(!Role::Editor.allows(Policy::Admin));
    }

    #[test]
    fn key_requests_name_the_field_at_fault() {
        let ok = KeyRequest::new("editor", "acme, beta", "ops".into()).unwrap();
        assert_eq!((ok.role, ok.scope.includes("beta")), (Role::Editor, true));
        assert_eq!(
            KeyRequest::new("root", "*", String::new()).unwrap_err().0,
            "role"
        );
        assert_eq!(
            KeyRequest::new("admin", "", String::new()).unwrap_err().0,
            "bots"
        );
        assert_eq!(
            KeyRequest::new("admin", "*", "x".repeat(201))
                .unwrap_err()
                .0,
            "name"
        );
    }

    #[test]
    fn scopes_parse() {
        assert_eq!(Scope::parse("*").unwrap(), Scope::All);
        assert!(Scope::parse("acme, beta").unwrap().includes("beta"));
        assert!(Scope::parse("").is_err());
        assert!(Scope::parse("a b").is_err());
    }

    #[test]
    fn rate_limiter_refuses_past_the_burst() {
        let limiter = RateLimiter::new(1.0, 2.0);
        assert!(limiter.take("k").is_ok());
        assert!(limiter.take("k").is_ok());
        assert!(limiter.take("k").is_err());
        assert!(limiter.take("other").is_ok());
    }

    #[tokio::test]
    async fn one_keys_body_budget_never_blocks_another() {
        let budgets = BodyBudgets::new(8 << 20);
        let soon = || tokio::time::Instant::now() + std::time::Duration::from_millis(50);
        let held = budgets.acquire(Some("a"), 8 << 20, soon()).await;
        assert!(held.is_some());
        assert!(budgets.acquire(Some("a"), 1, soon()).await.is_none());
        assert!(budgets.acquire(Some("b"), 8 << 20, soon()).await.is_some());
        drop(held);
        assert!(budgets.acquire(Some("a"), 1, soon()).await.is_some());
    }
}
