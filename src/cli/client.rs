//! Reaching convlog: a server over HTTP (named with --server, or found at the
//! configured address) presenting an API key, or the data directory itself.
//!
//! Discovery never creates anything: a command that finds no server and was
//! not told to work on a data directory fails saying how to name one, so a
//! typo'd port can't silently start a fresh `./data` with a new user-key secret.

use super::ClientArgs;
use anyhow::{anyhow, bail};
use convlog_engine::config::Config;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// What a client command works on.
pub enum Target {
    /// A running server.
    Server(Server),
    /// The data directory itself (no server holds it).
    Direct(Box<Config>),
}

/// What direct mode does with a data directory that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Create it, saying so (`ingest`: the first load makes the directory).
    Create,
    /// Refuse: there is nothing to work on.
    Refuse,
}

/// The base URL of `--server` text: `http://` added when no scheme is given,
/// trailing slashes dropped.
pub fn server_url(text: &str) -> Result<String, String> {
    let given = text.trim();
    let (scheme, rest) = given.split_once("://").unwrap_or(("http", given));
    let rest = rest.trim_end_matches('/');
    match scheme {
        "http" if rest.is_empty() || rest.starts_with('/') => {
            Err(format!("--server {given:?} names no host"))
        }
        "http" => Ok(format!("http://{rest}")),
        // ureq is built without TLS: say so rather than fail obscurely.
        "https" => Err(format!(
            "--server {given:?}: this convlog speaks plain HTTP only; reach an HTTPS \
             server through a local proxy or an SSH tunnel"
        )),
        _ => Err(format!(
            "--server {given:?}: expected http://HOST:PORT or HOST:PORT"
        )),
    }
}

/// The address a local server of this configuration listens on, as a URL
/// (an unspecified listen address is reached on loopback).
pub fn configured_url(config: &Config) -> String {
    let mut address = config.server.listen;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{address}")
}

/// Whether a convlog process holds the data directory's lock (without creating anything).
fn held_by_a_running_convlog(dir: &Path) -> bool {
    let Ok(lock) = std::fs::File::open(dir.join("LOCK")) else {
        return false;
    };
    // Dropping `lock` releases the lock taken when it was free.
    matches!(lock.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// Whether something answers `GET /healthz` at `base` within a second.
fn answers(base: &str) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(1)))
        .build()
        .into();
    agent.get(&format!("{base}/healthz")).call().is_ok()
}

/// Chooses what a client command works on; `needs` says which key it needs (for a 403).
///
/// In order: `--server`; `--direct`; an explicit `--data-dir` no running
/// convlog holds (directly); the server at the configured address; otherwise
/// an error that says what to do.
pub fn resolve(args: &ClientArgs, missing: Missing, needs: &'static str) -> anyhow::Result<Target> {
    let config = args.config.load()?;
    let key = args.api_key.clone().filter(|key| !key.trim().is_empty());
    if let Some(text) = &args.server {
        let base = server_url(text).map_err(anyhow::Error::msg)?;
        return Ok(Target::Server(Server::new(base, key, needs)));
    }
    let dir = config.server.data_dir.clone();
    let held = held_by_a_running_convlog(&dir);
    if args.direct {
        if held {
            bail!(
                "the data directory {} is in use by a running convlog; talk to it with \
                 --server URL (the address it printed: \"convlog listening on …\"), or stop it first",
                dir.display()
            );
        }
        return direct(config, missing);
    }
    // A directory named on the command line that no server holds is not what a
    // server at the configured address serves.
    if args.config.data_dir.is_some() && !held {
        return direct(config, missing);
    }
    let local = configured_url(&config);
    if answers(&local) {
        return Ok(Target::Server(Server::new(local, key, needs)));
    }
    if held {
        bail!(
            "the data directory {} is in use by a running convlog that did not answer at \
             {local}; pass --server with the address it printed (\"convlog listening on …\")",
            dir.display()
        );
    }
    bail!(
        "no server answered at {local}; start one with `convlog serve`, name it with \
         --server URL, or pass --direct (or --data-dir DIR) to work on the data directory itself"
    )
}

/// Direct mode on `config`'s data directory, after checking it is there (or may be made).
fn direct(config: Config, missing: Missing) -> anyhow::Result<Target> {
    let dir = &config.server.data_dir;
    if !dir.exists() {
        match missing {
            Missing::Create => eprintln!("creating data directory {}", dir.display()),
            Missing::Refuse => bail!("no data directory at {}", dir.display()),
        }
    } else if missing == Missing::Refuse && !dir.join("convlog.db").exists() {
        bail!(
            "no convlog data in {} (it holds no convlog.db); check --data-dir",
            dir.display()
        );
    }
    Ok(Target::Direct(Box::new(config)))
}

/// An error answer the caller may handle itself (auth problems never get here).
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub code: String,
    pub message: String,
    /// `error.details` of a 422: problems by item index of the request body.
    pub details: Vec<Detail>,
    /// `Retry-After` of a 429, in seconds.
    pub retry_after: Option<u64>,
}

/// One entry of `error.details`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Detail {
    pub index: Option<usize>,
    #[serde(default)]
    pub field: String,
    #[serde(default)]
    pub reason: String,
}

impl Refusal {
    /// `422 invalid_message: …`.
    pub fn describe(&self) -> String {
        match (self.code.is_empty(), self.message.is_empty()) {
            (false, false) => format!("{} {}: {}", self.status, self.code, self.message),
            (false, true) => format!("{} {}", self.status, self.code),
            _ => self.status.to_string(),
        }
    }
}

/// A server and the key to present to it.
pub struct Server {
    base: String,
    key: Option<String>,
    needs: &'static str,
    agent: ureq::Agent,
}

impl Server {
    fn new(base: String, key: Option<String>, needs: &'static str) -> Server {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .into();
        Server {
            base,
            key,
            needs,
            agent,
        }
    }

    /// `http://host:port`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`: the JSON answer, or an error saying why not.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.patiently(|| {
            let mut request = self.agent.get(&format!("{}{path}", self.base));
            if let Some(key) = &self.key {
                request = request.header("Authorization", &format!("Bearer {key}"));
            }
            self.answer(request.call())
        })?
        .map_err(|refusal| self.refused(&format!("GET {path}"), &refusal))
    }

    /// `POST path` with a JSON body (or none): the JSON answer, or an error saying why not.
    pub fn post(&self, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let bytes = body.map(Value::to_string).unwrap_or_default();
        self.post_bytes(path, "application/json", bytes.as_bytes())?
            .map_err(|refusal| self.refused(&format!("POST {path}"), &refusal))
    }

    /// `POST path` with a body; a refusal other than an auth problem is the caller's to explain.
    pub fn post_bytes(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> anyhow::Result<Result<Value, Refusal>> {
        self.patiently(|| {
            let mut request = self
                .agent
                .post(&format!("{}{path}", self.base))
                .content_type(content_type);
            if let Some(key) = &self.key {
                request = request.header("Authorization", &format!("Bearer {key}"));
            }
            self.answer(request.send(body))
        })
    }

    /// Sends again after the wait a `429` asks for (a few times), so a rate
    /// limit slows a long load down instead of stopping it halfway.
    fn patiently(
        &self,
        send: impl Fn() -> anyhow::Result<Result<Value, Refusal>>,
    ) -> anyhow::Result<Result<Value, Refusal>> {
        const ATTEMPTS: u32 = 6;
        for _ in 1..ATTEMPTS {
            match send()? {
                Err(refusal) if refusal.status == 429 => {
                    let wait = refusal.retry_after.unwrap_or(1).clamp(1, 30);
                    std::thread::sleep(Duration::from_secs(wait));
                }
                answer => return Ok(answer),
            }
        }
        send()
    }

    /// Follows a job the server started until it ends, on a progress bar; the finished job.
    pub fn follow(&self, job: Value, bar: &indicatif::ProgressBar) -> anyhow::Result<Value> {
        let Some(id) = job["id"].as_str().map(str::to_string) else {
            bail!(
                "the server at {} answered without a job id: {job}",
                self.base
            );
        };
        let mut job = job;
        loop {
            bar.set_length(job["total"].as_u64().unwrap_or(0));
            bar.set_position(job["processed"].as_u64().unwrap_or(0));
            match job["state"].as_str() {
                Some("succeeded") => return Ok(job),
                Some("failed") => bail!(
                    "the {} job {id} failed: {}",
                    job["kind"].as_str().unwrap_or("server's"),
                    job["error"].as_str().unwrap_or("no reason given")
                ),
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
            job = self.get(&format!("/v1/admin/jobs/{id}"))?;
        }
    }

    /// Reads an answer: JSON on success, auth problems as errors, other refusals for the caller.
    fn answer(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Result<Value, Refusal>> {
        let mut response = response.map_err(|err| self.unreachable(&err))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse().ok());
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|err| anyhow!("reading the answer of the server at {}: {err}", self.base))?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map(Ok).map_err(|_| {
                anyhow!(
                    "the server at {} answered {status} with something that is not JSON; is it convlog?",
                    self.base
                )
            });
        }
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let error = &body["error"];
        let refusal = Refusal {
            status,
            code: error["code"].as_str().unwrap_or("").to_string(),
            message: error["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| text.chars().take(200).collect()),
            details: serde_json::from_value(error["details"].clone()).unwrap_or_default(),
            retry_after,
        };
        match (status, &self.key) {
            (401, Some(_)) => bail!(
                "the server at {} refused the API key ({}: {}); check --api-key or CONVLOG_API_KEY",
                self.base,
                status,
                refusal.message
            ),
            (401, None) => bail!(
                "the server at {} needs an API key ({}: {}); pass --api-key KEY or set \
                 CONVLOG_API_KEY (an admin makes one with `convlog keys create`)",
                self.base,
                status,
                refusal.message
            ),
            (403, _) => bail!(
                "the server at {} refused this to the API key's role ({}: {}); {}",
                self.base,
                status,
                refusal.message,
                self.needs
            ),
            _ => Ok(Err(refusal)),
        }
    }

    /// The error of a request that got no answer.
    fn unreachable(&self, err: &ureq::Error) -> anyhow::Error {
        let reason = match err {
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                "connection refused".to_string()
            }
            ureq::Error::Io(io) => io.to_string(),
            ureq::Error::HostNotFound => "host not found".to_string(),
            ureq::Error::Timeout(_) => "timed out".to_string(),
            ureq::Error::ConnectionFailed => "connection failed".to_string(),
            other => other.to_string(),
        };
        anyhow!("no server answered at {} ({reason})", self.base)
    }

    /// The error of a refused request.
    fn refused(&self, what: &str, refusal: &Refusal) -> anyhow::Error {
        anyhow!(
            "the server at {} refused {what} ({})",
            self.base,
            refusal.describe()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_get_a_scheme_and_lose_trailing_slashes() {
        for (given, expected) in [
            ("127.0.0.1:7700", "http://127.0.0.1:7700"),
            ("localhost:7700/", "http://localhost:7700"),
            ("http://10.0.0.5:80//", "http://10.0.0.5:80"),
            (" http://host:1/convlog/ ", "http://host:1/convlog"),
            ("[::1]:7700", "http://[::1]:7700"),
        ] {
            assert_eq!(server_url(given).as_deref(), Ok(expected), "{given:?}");
        }
    }

    #[test]
    fn server_urls_without_a_host_or_over_tls_are_refused_with_the_reason() {
        for (given, reason) in [
            ("", "names no host"),
            ("http://", "names no host"),
            ("https://logs.example.com", "plain HTTP only"),
            ("ftp://host", "expected http://"),
        ] {
            let err = server_url(given).unwrap_err();
            assert!(err.contains(reason), "{given:?}: {err}");
        }
    }

    #[test]
    fn an_unspecified_listen_address_is_reached_on_loopback() {
        let mut config =
            convlog_engine::config::Config::load(&convlog_engine::config::Sources::default())
                .expect("embedded defaults");
        config.server.listen = "0.0.0.0:7711".parse().unwrap();
        assert_eq!(configured_url(&config), "http://127.0.0.1:7711");
    }
}
