//! In a cluster (`[cluster]`), a request for a bot another node owns is sent
//! on to that node and its answer streamed back. The owner is computed from
//! the bot id with the log's partition function, so the nodes have nothing to
//! agree on at run time. A node that doesn't answer makes its bots 503
//! (`owner_unavailable`), never another node's guess.

use super::error::AppError;
use crate::app::App;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use convlog_engine::settings::ClusterNode;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::OnceLock;
use std::time::Duration;

/// Marks a forwarded request with the node it came from: it is answered
/// where it lands, never forwarded again.
pub const FORWARDED: &str = "x-convlog-forwarded";

/// How long a node may take to accept a forwarded request's connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn client() -> &'static Client<HttpConnector, Body> {
    static CLIENT: OnceLock<Client<HttpConnector, Body>> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        Client::builder(TokioExecutor::new()).build(connector)
    })
}

/// The node to send a request about `bot` to; `None` when this node answers it.
pub fn owner<'a>(
    app: &'a App,
    bot: &str,
    forwarded: bool,
) -> Result<Option<&'a ClusterNode>, AppError> {
    let Some(cluster) = &app.config.cluster else {
        return Ok(None);
    };
    let owner = cluster.owner(bot);
    if owner.name == cluster.node {
        return Ok(None);
    }
    if forwarded {
        // The nodes' [cluster] tables disagree: answering would be a guess.
        return Err(AppError::Misrouted(format!(
            "bot {bot:?} was forwarded to node {:?}, which holds partition {} as owned by {:?}: the nodes' [cluster] settings differ",
            cluster.node,
            cluster.partition(bot),
            owner.name
        )));
    }
    Ok(Some(owner))
}

/// Whether `request` was forwarded by another node.
pub fn is_forwarded(request: &Request) -> bool {
    request.headers().contains_key(FORWARDED)
}

/// Sends `request` to `node` and returns its answer (streamed).
pub async fn forward(app: &App, node: &ClusterNode, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let uri: Uri = match format!("{}{path}", node.url).parse() {
        Ok(uri) => uri,
        Err(err) => return unavailable(node, err.to_string()),
    };
    parts.uri = uri;
    parts.headers.remove(header::HOST);
    parts.headers.remove(header::CONNECTION);
    let this = app.config.cluster.as_ref().map_or("", |c| c.node.as_str());
    if let Ok(value) = HeaderValue::from_str(this) {
        parts
            .headers
            .insert(HeaderName::from_static(FORWARDED), value);
    }
    match client().request(Request::from_parts(parts, body)).await {
        Ok(response) => response.map(Body::new),
        Err(err) => unavailable(node, err.to_string()),
    }
}

fn unavailable(node: &ClusterNode, reason: String) -> Response {
    tracing::warn!(node = %node.name, error = %reason, "forwarding to the owning node failed");
    AppError::OwnerUnavailable {
        node: node.name.clone(),
        reason,
    }
    .into_response()
}

/// `GET path` on every other node, as a forwarded request carrying the
/// caller's `Authorization`: each node's JSON answer, or why there is none.
pub async fn ask_others(
    app: &App,
    path: &str,
    authorization: Option<&HeaderValue>,
) -> Vec<(String, Result<serde_json::Value, String>)> {
    let Some(cluster) = &app.config.cluster else {
        return Vec::new();
    };
    let asks = cluster
        .nodes
        .iter()
        .filter(|node| node.name != cluster.node)
        .map(|node| async move {
            let mut request = Request::builder()
                .uri(format!("{}{path}", node.url))
                .header(FORWARDED, cluster.node.as_str());
            if let Some(value) = authorization {
                request = request.header(header::AUTHORIZATION, value);
            }
            let request = request.body(Body::empty()).expect("a valid request");
            let answer = async {
                let response = client()
                    .request(request)
                    .await
                    .map_err(|err| err.to_string())?;
                let status = response.status();
                let body = http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .map_err(|err| err.to_string())?
                    .to_bytes();
                if !status.is_success() {
                    return Err(format!("answered {status}"));
                }
                serde_json::from_slice(&body).map_err(|err| err.to_string())
            };
            (node.name.clone(), answer.await)
        });
    futures::future::join_all(asks).await
}
