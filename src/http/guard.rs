//! The guard every request passes: request id, authentication, role and bot
//! scope from the route table, rate limit, and the audit entry of every change.

use super::error::AppError;
use super::routes;
use crate::app::App;
use crate::auth::{Policy, Scope, constant_time_eq, hash_secret, parse_key};
use crate::store::keys::{self, NewAuditEntry};
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Who is calling, for handlers that check more (ingest checks each message's bot).
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: Option<String>,
    pub scope: Scope,
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

fn bearer(request: &Request) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().to_string())
}

/// Checks the caller against the route's policy; adds `Caller` for the handler.
pub async fn guard(
    State(app): State<App>,
    params: RawPathParams,
    mut request: Request,
    next: Next,
) -> Response {
    let request_id = request_id(&request);
    let method = request.method().clone();
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
    let policy = match matched.as_deref() {
        Some(path) => match routes::policy(&checked_method, path) {
            Some(policy) => Some(policy),
            // A matched route without a policy is a bug: refuse rather than serve it open.
            None => {
                tracing::error!(%method, path, "route without a policy");
                return AppError::Forbidden("unlisted").into_response();
            }
        },
        None => None,
    };
    let presented = bearer(&request);
    let mut response = match authorize(&app, presented, policy, bot.as_deref()).await {
        Ok(caller) => {
            let key_id = caller.key_id.clone();
            request.extensions_mut().insert(caller);
            let path = request.uri().path().to_string();
            let response = next.run(request).await;
            if let (Some(matched), Some(policy)) = (&matched, policy)
                && audited(&method, policy)
                && response.status().is_success()
            {
                let entry = NewAuditEntry {
                    at: app.clock.now(),
                    key_id,
                    action: format!("{method} {matched}"),
                    target: super::redact(&path),
                    bot_id: bot,
                    request_id: request_id.clone(),
                    status: response.status().as_u16(),
                };
                let written = app
                    .store
                    .write(move |ctx| keys::append_audit(ctx.conn, &entry))
                    .await;
                if let Err(err) = written {
                    tracing::error!(error = %err, "could not write the audit entry of a change");
                }
            }
            response
        }
        Err(err) => err.into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Changes are audited; reads and ingest (the bots' own traffic) are not.
fn audited(method: &Method, policy: Policy) -> bool {
    *method != Method::GET
        && *method != Method::HEAD
        && !matches!(policy, Policy::Ingest | Policy::Public)
}

async fn authorize(
    app: &App,
    presented: Option<String>,
    policy: Option<Policy>,
    bot: Option<&str>,
) -> Result<Caller, AppError> {
    let open_caller = Caller {
        key_id: None,
        scope: Scope::All,
    };
    // Unknown routes answer 404 from the fallback; public routes need no key.
    let Some(policy) = policy else {
        return Ok(open_caller);
    };
    if policy == Policy::Public {
        return Ok(open_caller);
    }
    let key_id = presented
        .as_deref()
        .and_then(parse_key)
        .map(|(id, _)| id.to_string());
    let (any_key, record) = app
        .store
        .read_async(move |conn| {
            let record = match &key_id {
                Some(id) => keys::key(conn, id)?,
                None => None,
            };
            Ok((keys::any_active_key(conn)?, record))
        })
        .await
        .map_err(AppError::Store)?;
    // Open mode: no key exists yet, and the server only listens on loopback (checked at start).
    if !any_key && app.config.server.listen.ip().is_loopback() && presented.is_none() {
        return Ok(open_caller);
    }
    let Some(presented) = presented else {
        return Err(AppError::Unauthorized(
            "send Authorization: Bearer <API key>",
        ));
    };
    let record = match (parse_key(&presented), record) {
        (Some((_, secret)), Some(record))
            if record.revoked_at.is_none()
                && constant_time_eq(&hash_secret(secret), &record.secret_hash) =>
        {
            record
        }
        _ => return Err(AppError::Unauthorized("unknown or revoked API key")),
    };
    if !record.role.allows(policy) {
        return Err(AppError::Forbidden(record.role.as_str()));
    }
    match bot {
        // Another bot's data doesn't exist for this key: no hint that it does.
        Some(bot) if !record.scope.includes(bot) => return Err(AppError::NotFound("bot")),
        None if policy == Policy::Admin && record.scope != Scope::All => {
            return Err(AppError::Forbidden("admin of some bots only"));
        }
        _ => {}
    }
    if let Err(retry_after) = app.rate_limiter.take(&record.id) {
        return Err(AppError::RateLimited { retry_after });
    }
    Ok(Caller {
        key_id: Some(record.id),
        scope: record.scope,
    })
}
