//! The guard every request passes: request id, open-mode origin checks,
//! authentication, role and bot scope from the route table, rate limit, the
//! request body (type, per-key memory budget, deadline), and the audit entry of
//! every change and of refused access.

use super::error::AppError;
use super::routes::{self, Accepts};
use crate::app::App;
use crate::metrics::Refusal;
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use convlog_engine::audit::NewAuditEntry;
use convlog_engine::auth::{Policy, Scope, constant_time_eq, hash_secret, parse_key};
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

/// Who is calling, for handlers that check more (ingest checks each message's bot).
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: Option<String>,
    pub scope: Scope,
    /// The request's id (`x-request-id`), which the audit log records.
    pub request_id: String,
}

/// The route a response answered, for the request log and metrics.
#[derive(Debug, Clone)]
pub struct RouteServed {
    /// Its template (`/v1/bots/{bot}/conversations`).
    pub template: String,
    /// Whether it is an ingest route.
    pub ingest: bool,
}

fn request_id(request: &Request) -> String {
    let given = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    match given {
        Some(id) => id.to_string(),
        None => {
            let mut bytes = [0u8; 8];
            let _ = getrandom::fill(&mut bytes);
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        }
    }
}

/// The token of `Authorization: Bearer <token>` (the scheme in any case, RFC 7235).
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// The request's `Host` (or HTTP/2 authority), lowercased.
fn host(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .map(str::to_ascii_lowercase)
}

/// Whether `host` (with or without a port) names this machine's loopback.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Open mode serves loopback only: a foreign `Host` is DNS rebinding, a foreign
/// `Origin` is another site's page driving the operator's browser.
fn check_open_mode(headers: &HeaderMap, uri: &Uri) -> Result<(), (Refusal, AppError)> {
    let Some(host) = host(headers, uri).filter(|host| is_loopback_host(host)) else {
        return Err((
            Refusal::ForeignHost,
            AppError::Refused(
                "without API keys the server answers only requests addressed to a loopback \
                 Host (localhost, 127.0.0.1, [::1]); create a key to serve other names",
            ),
        ));
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        let same = origin
            .to_str()
            .ok()
            .and_then(|origin| {
                origin
                    .to_ascii_lowercase()
                    .strip_prefix("http://")
                    .map(str::to_string)
            })
            .is_some_and(|authority| authority == host);
        if !same {
            return Err((
                Refusal::ForeignOrigin,
                AppError::Refused(
                    "without API keys the server refuses requests from other sites' pages \
                     (Origin is not this server)",
                ),
            ));
        }
    }
    Ok(())
}

/// Checks the caller against the route's policy, reads the body, and adds
/// `Caller` for the handler.
pub async fn guard(
    State(app): State<App>,
    params: RawPathParams,
    request: Request,
    next: Next,
) -> Response {
    let request_id = request_id(&request);
    let otlp = super::ingest::otlp_errors(&request);
    let route = request.extensions().get::<MatchedPath>().map(|matched| {
        let method = match request.method() {
            &Method::HEAD => Method::GET,
            method => method.clone(),
        };
        RouteServed {
            template: matched.as_str().to_string(),
            ingest: routes::spec(&method, matched.as_str())
                .is_some_and(|spec| spec.policy == Policy::Ingest),
        }
    });
    let mut response = guarded(&app, params, request, next, &request_id).await;
    if let Some(route) = route {
        response.extensions_mut().insert(route);
    }
    if let Some(encoding) = otlp {
        response = super::ingest::otlp_error(response, encoding).await;
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

async fn guarded(
    app: &App,
    params: RawPathParams,
    request: Request,
    next: Next,
    request_id: &str,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let bot = params
        .iter()
        .find(|(name, _)| *name == "bot")
        .map(|(_, value)| value.to_string());
    // axum answers HEAD with the GET handler: it must pass the GET's check.
    let checked_method = if method == Method::HEAD {
        Method::GET
    } else {
        method.clone()
    };
    let Some(matched_path) = matched.as_deref() else {
        return next.run(request).await;
    };
    let Some(spec) = routes::spec(&checked_method, matched_path) else {
        return AppError::MethodNotAllowed {
            method: method.to_string(),
            allow: routes::allowed_methods(matched_path),
        }
        .into_response();
    };
    let presented = bearer(request.headers());
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    let target = (request.headers(), request.uri());
    let caller = match authorize(
        app,
        target,
        presented.as_deref(),
        spec.policy,
        bot.as_deref(),
    )
    .await
    {
        Ok(caller) => caller,
        Err(Denied::Refused(reason, err)) => {
            refused(
                app,
                reason,
                &err,
                &method,
                matched.as_deref(),
                &path,
                presented.as_deref(),
                peer,
                request_id,
            )
            .await;
            return err.into_response();
        }
        Err(Denied::Other(err)) => return err.into_response(),
    };
    let (request, _budget) = match read_body(app, request, spec.accepts, &caller).await {
        Ok(read) => read,
        Err(err) => return err.into_response(),
    };
    // In a cluster, another node may own the bot: it answers (and audits).
    if let Some(bot) = &bot {
        match super::forward::owner(app, bot, super::forward::is_forwarded(&request)) {
            Ok(Some(node)) => return super::forward::forward(app, node, request).await,
            Ok(None) => {}
            Err(err) => return err.into_response(),
        }
    }
    let key_id = caller.key_id.clone();
    let mut request = request;
    request.extensions_mut().insert(Caller {
        request_id: request_id.to_string(),
        ..caller
    });
    let response = next.run(request).await;
    if let Some(matched) = &matched
        && audited(&method, spec.policy)
        && response.status().is_success()
    {
        audit(
            app,
            NewAuditEntry {
                at: app.clock.now(),
                key_id,
                action: format!("{method} {matched}"),
                target: super::redact(&path),
                bot_id: bot,
                request_id: request_id.to_string(),
                status: response.status().as_u16(),
            },
        )
        .await;
    }
    response
}

/// Changes are audited; reads and ingest (the bots' own traffic) are not.
fn audited(method: &Method, policy: Policy) -> bool {
    *method != Method::GET
        && *method != Method::HEAD
        && !matches!(policy, Policy::Ingest | Policy::Public)
}

async fn audit(app: &App, entry: NewAuditEntry) {
    if let Err(err) = app.audit.append(entry).await {
        tracing::error!(error = %err, "could not write an audit entry");
    }
}

/// Counts a refused request, and records it in the audit log unless refusals
/// arrive faster than `auth.audit_refusals` allows (a flood would bury the log).
#[allow(clippy::too_many_arguments)]
async fn refused(
    app: &App,
    reason: Refusal,
    err: &AppError,
    method: &Method,
    matched: Option<&str>,
    path: &str,
    presented: Option<&str>,
    peer: Option<SocketAddr>,
    request_id: &str,
) {
    app.metrics.refused(reason);
    if app.refusal_audit.take("refusals").is_err() {
        return;
    }
    let key_id = presented.and_then(parse_key).map(|(id, _)| id.to_string());
    let peer = peer.map_or_else(|| "unknown".to_string(), |peer| peer.ip().to_string());
    let status = err.status().as_u16();
    audit(
        app,
        NewAuditEntry {
            at: app.clock.now(),
            key_id,
            action: format!("refused {method} {}", matched.unwrap_or(path)),
            target: format!("{} from {peer}: {}", super::redact(path), reason.as_str()),
            bot_id: None,
            request_id: request_id.to_string(),
            status,
        },
    )
    .await;
}

/// Why a request goes no further.
enum Denied {
    /// Access control said no: counted and audited.
    Refused(Refusal, AppError),
    /// Anything else (the store failed, the key is rate limited).
    Other(AppError),
}

async fn authorize(
    app: &App,
    (headers, uri): (&HeaderMap, &Uri),
    presented: Option<&str>,
    policy: Policy,
    bot: Option<&str>,
) -> Result<Caller, Denied> {
    let open_caller = Caller {
        key_id: None,
        scope: Scope::All,
        request_id: String::new(),
    };
    let key_id = presented.and_then(parse_key).map(|(id, _)| id.to_string());
    let (any_key, record) = app
        .keys
        .lookup(key_id)
        .await
        .map_err(|err| Denied::Other(AppError::Store(err)))?;
    app.note_key_state(any_key);
    if !any_key {
        check_open_mode(headers, uri).map_err(|(reason, err)| Denied::Refused(reason, err))?;
    }
    if policy == Policy::Public {
        return Ok(open_caller);
    }
    // Open mode: no key exists yet, and the server only listens on loopback (checked at start).
    if !any_key && app.config.server.listen.ip().is_loopback() && presented.is_none() {
        return Ok(open_caller);
    }
    let Some(presented) = presented else {
        return Err(Denied::Refused(
            Refusal::MissingKey,
            AppError::Unauthorized("send Authorization: Bearer <API key>"),
        ));
    };
    let record = match (parse_key(presented), record) {
        (Some((_, secret)), Some(record))
            if record.revoked_at.is_none()
                && constant_time_eq(&hash_secret(secret), &record.secret_hash) =>
        {
            record
        }
        _ => {
            return Err(Denied::Refused(
                Refusal::BadKey,
                AppError::Unauthorized("unknown or revoked API key"),
            ));
        }
    };
    let not_allowed = |err| Err(Denied::Refused(Refusal::NotAllowed, err));
    if !record.role.allows(policy) {
        return not_allowed(AppError::Forbidden(record.role.as_str()));
    }
    match bot {
        // Another bot's data doesn't exist for this key: no hint that it does.
        Some(bot) if !record.scope.includes(bot) => return not_allowed(AppError::NotFound("bot")),
        None if policy == Policy::Admin && record.scope != Scope::All => {
            return not_allowed(AppError::Forbidden("admin of some bots only"));
        }
        _ => {}
    }
    if let Err(retry_after) = app.rate_limiter.take(&record.id) {
        return Err(Denied::Other(AppError::RateLimited { retry_after }));
    }
    Ok(Caller {
        key_id: Some(record.id),
        scope: record.scope,
        request_id: String::new(),
    })
}

/// Reads the request body into memory under the caller's budget and the body
/// deadline, after checking its type. Returns the request with the buffered
/// body and the budget it holds until the response is made.
async fn read_body(
    app: &App,
    request: Request,
    accepts: Accepts,
    caller: &Caller,
) -> Result<(Request, Option<tokio::sync::OwnedSemaphorePermit>), AppError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    // Whatever the framing (Content-Length, chunked), an empty body is none.
    if http_body::Body::is_end_stream(request.body()) {
        return Ok((request, None));
    }
    if accepts == Accepts::Nothing {
        // Refused unread: a body on GET must not hold budget or a slot.
        return Err(AppError::InvalidParameter {
            name: "body".into(),
            reason: "this route takes no body".into(),
        });
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    if !accepts.allows(content_type) {
        return Err(AppError::UnsupportedMediaType {
            given: content_type.unwrap_or("none").chars().take(100).collect(),
            accepted: accepts.describe(),
        });
    }
    let server = &app.config.server;
    let deadline = tokio::time::Instant::now() + server.body_timeout;
    // A chunked body may be as large as the limit.
    let cost = declared.unwrap_or(server.max_body as u64);
    let budget = app
        .body_budgets
        .acquire(caller.key_id.as_deref(), cost, deadline)
        .await
        .ok_or(AppError::Busy(
            "this API key's earlier uploads still hold its body budget; retry shortly",
        ))?;
    let (parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, server.max_body);
    let bytes = match tokio::time::timeout_at(deadline, limited.collect()).await {
        Err(_) => {
            app.metrics.body_timeouts.fetch_add(1, Ordering::Relaxed);
            return Err(AppError::BodyTimeout {
                limit: server.body_timeout,
            });
        }
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
            return Err(AppError::PayloadTooLarge {
                limit: server.max_body,
            });
        }
        Ok(Err(err)) => {
            return Err(AppError::InvalidParameter {
                name: "body".into(),
                reason: format!("could not be read: {err}"),
            });
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    Ok((Request::from_parts(parts, Body::from(bytes)), Some(budget)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_with_and_without_ports() {
        for host in [
            "localhost",
            "localhost:7700",
            "127.0.0.1",
            "127.0.0.1:7700",
            "127.9.9.9:80",
            "[::1]",
            "[::1]:7700",
            "app.localhost:7700",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:7700",
            "10.0.0.1:7700",
            "localhost.evil.example",
            "[::2]:7700",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut headers = HeaderMap::new();
        for value in ["Bearer k", "bearer k", "BEARER k", "BeArEr   k"] {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            assert_eq!(bearer(&headers).as_deref(), Some("k"), "{value}");
        }
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic k"));
        assert_eq!(bearer(&headers), None);
    }
}
