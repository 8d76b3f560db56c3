//! Search parameters: parsed from the query string and validated into a typed request.

use super::QueryError;
use convlog_core::{Micros, normalize_label, parse_timestamp};
use convlog_querylang::{QueryAst, QueryLimits, Role, parse};

/// How results are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    LastMessageAt,
    StartedAt,
    Relevance,
}

/// Which searchable thing a request is for: parameters differ slightly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Conversations,
    Messages,
    /// `/nodes`, `/tags`, `/labels`, `/flows`: filters only, no paging.
    Aggregates,
}

/// A validated search request (filters plus paging).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchRequest {
    pub from: Option<Micros>,
    pub to: Option<Micros>,
    pub q: Option<String>,
    pub ast: Option<QueryAst>,
    pub channels: Vec<String>,
    pub tags: Vec<String>,
    pub labels: Vec<String>,
    pub flagged: Option<bool>,
    pub flows: Vec<String>,
    pub steps: Vec<String>,
    pub dropoff: Option<bool>,
    pub nodes: Vec<String>,
    pub roles: Vec<Role>,
    pub sort: Option<Sort>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// Largest page.
pub const MAX_LIMIT: usize = 100;
/// Page size when none is asked for.
pub const DEFAULT_LIMIT: usize = 20;
/// Most values of one repeated parameter.
const MAX_VALUES: usize = 100;

fn invalid(name: &str, reason: impl Into<String>) -> QueryError {
    QueryError::InvalidParameter {
        name: name.to_string(),
        reason: reason.into(),
    }
}

fn parse_bool(name: &str, value: &str) -> Result<bool, QueryError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(name, format!("{value:?} is not true or false"))),
    }
}

fn push_value(name: &str, list: &mut Vec<String>, value: &str) -> Result<(), QueryError> {
    if value.is_empty() || value.len() > 256 {
        return Err(invalid(name, "values are 1 to 256 bytes"));
    }
    if list.len() >= MAX_VALUES {
        return Err(invalid(name, format!("at most {MAX_VALUES} values")));
    }
    list.push(value.to_string());
    Ok(())
}

impl SearchRequest {
    /// Parses query-string pairs, refusing unknown parameters and bad values.
    pub fn from_pairs(
        pairs: &[(String, String)],
        target: Target,
    ) -> Result<SearchRequest, QueryError> {
        let mut request = SearchRequest::default();
        for (name, value) in pairs {
            let value = value.as_str();
            match name.as_str() {
                "from" | "to" => {
                    let micros = parse_timestamp(value).ok_or_else(|| {
                        invalid(name, format!("{value:?} is not an RFC 3339 timestamp"))
                    })?;
                    if name == "from" {
                        request.from = Some(micros);
                    } else {
                        request.to = Some(micros);
                    }
                }
                "q" => request.q = Some(value.to_string()),
                "channel" => push_value(name, &mut request.channels, &value.to_ascii_lowercase())?,
                "tag" => push_value(name, &mut request.tags, value)?,
                "label" => {
                    let label = normalize_label(value).map_err(|reason| invalid(name, reason))?;
                    push_value(name, &mut request.labels, &label)?
                }
                "flow" => push_value(name, &mut request.flows, value)?,
                "step" => push_value(name, &mut request.steps, value)?,
                "node" => push_value(name, &mut request.nodes, value)?,
                "flagged" => request.flagged = Some(parse_bool(name, value)?),
                "dropoff" => request.dropoff = Some(parse_bool(name, value)?),
                "role" if target == Target::Messages => {
                    let role = Role::parse(value).ok_or_else(|| {
                        invalid(name, format!("{value:?} is not user, bot, agent or system"))
                    })?;
                    request.roles.push(role);
                }
                "sort" if target != Target::Aggregates => {
                    request.sort = Some(match value {
                        "last_message_at" => Sort::LastMessageAt,
                        "started_at" => Sort::StartedAt,
                        "relevance" => Sort::Relevance,
                        "timestamp" if target == Target::Messages => Sort::LastMessageAt,
                        _ => {
                            return Err(invalid(
                                name,
                                format!(
                                    "{value:?} is not last_message_at, started_at or relevance"
                                ),
                            ));
                        }
                    })
                }
                "limit" if target != Target::Aggregates => {
                    let limit: usize = value
                        .parse()
                        .map_err(|_| invalid(name, format!("{value:?} is not a whole number")))?;
                    if !(1..=MAX_LIMIT).contains(&limit) {
                        return Err(invalid(name, format!("must be between 1 and {MAX_LIMIT}")));
                    }
                    request.limit = Some(limit);
                }
                "cursor" if target != Target::Aggregates => {
                    request.cursor = Some(value.to_string())
                }
                other => return Err(invalid(other, "unknown parameter")),
            }
        }
        if let (Some(from), Some(to)) = (request.from, request.to)
            && from >= to
        {
            return Err(invalid("from", "must be before `to`"));
        }
        if !request.steps.is_empty() && request.flows.is_empty() {
            return Err(invalid("step", "needs a `flow`"));
        }
        if request.dropoff.is_some() && request.flows.is_empty() && !request.steps.is_empty() {
            return Err(invalid("dropoff", "needs a `flow`"));
        }
        if let Some(q) = &request.q {
            request.ast =
                parse(q, QueryLimits::default()).map_err(|err| QueryError::InvalidQuery {
                    position: err.position,
                    reason: err.reason,
                })?;
        }
        if request.sort == Some(Sort::Relevance) && request.ast.is_none() {
            request.sort = Some(Sort::LastMessageAt);
        }
        Ok(request)
    }

    /// The page size.
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT)
    }

    /// A fingerprint of everything but the paging, so a cursor can't be reused with other filters.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (
            &self.q,
            &self.channels,
            &self.tags,
            &self.labels,
            self.flagged,
            &self.flows,
            &self.steps,
            self.dropoff,
            &self.nodes,
            self.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            self.sort,
        )
            .hash(&mut hasher);
        hasher.finish()
    }
}

impl std::hash::Hash for Sort {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (*self as u8).hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn repeated_parameters_collect() {
        let request = SearchRequest::from_pairs(
            &pairs(&[
                ("channel", "web"),
                ("channel", "WhatsApp"),
                ("flagged", "true"),
            ]),
            Target::Conversations,
        )
        .unwrap();
        assert_eq!(request.channels, vec!["web", "whatsapp"]);
        assert_eq!(request.flagged, Some(true));
    }

    #[test]
    fn refuses_unknown_parameters_and_bad_values() {
        for bad in [
            ("chanel", "web"),
            ("limit", "0"),
            ("limit", "101"),
            ("flagged", "yes"),
            ("from", "yesterday"),
            ("sort", "size"),
            ("step", "ask-email"),
        ] {
            let err = SearchRequest::from_pairs(&pairs(&[bad]), Target::Conversations).unwrap_err();
            assert!(
                matches!(err, QueryError::InvalidParameter { .. }),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn invalid_query_names_the_position() {
        let err = SearchRequest::from_pairs(&pairs(&[("q", "(refund")]), Target::Conversations)
            .unwrap_err();
        assert!(
            matches!(err, QueryError::InvalidQuery { position: 0, .. }),
            "{err:?}"
        );
    }
}
