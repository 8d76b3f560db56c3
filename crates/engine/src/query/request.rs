//! Search parameters: parsed from the query string and validated into a typed request.

use super::QueryError;
use super::filters::{self, Dimension, FILTERS, Filter, Kind};
use convlog_core::{Micros, parse_time};
use convlog_querylang::{QueryAst, QueryLimits, parse};
use std::collections::BTreeMap;

/// How results are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    LastMessageAt,
    StartedAt,
    Relevance,
}

pub use super::filters::Target;

/// A validated search request (filters plus paging).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchRequest {
    pub from: Option<Micros>,
    pub to: Option<Micros>,
    pub q: Option<String>,
    pub ast: Option<QueryAst>,
    /// The filters given, by parameter ([`FILTERS`]): a bool as one `"true"`/`"false"`.
    pub filters: BTreeMap<&'static str, Vec<String>>,
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
/// Longest value of a filter, in bytes.
const MAX_VALUE_BYTES: usize = 256;

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

/// Adds one value of `filter` to `request`.
fn add_value(request: &mut SearchRequest, filter: &Filter, value: &str) -> Result<(), QueryError> {
    let name = filter.param;
    let value = match filter.kind {
        Kind::Bool => {
            let flag = parse_bool(name, value)?;
            request.filters.insert(name, vec![flag.to_string()]);
            return Ok(());
        }
        Kind::Multi => (filter.normalize)(value).map_err(|reason| invalid(name, reason))?,
    };
    if value.is_empty() || value.len() > MAX_VALUE_BYTES {
        return Err(invalid(
            name,
            format!("values are 1 to {MAX_VALUE_BYTES} bytes"),
        ));
    }
    let list = request.filters.entry(name).or_default();
    if list.len() >= MAX_VALUES {
        return Err(invalid(name, format!("at most {MAX_VALUES} values")));
    }
    list.push(value);
    Ok(())
}

impl SearchRequest {
    /// Parses query-string pairs, refusing unknown parameters and bad values.
    /// Relative times (`now-7d`) are taken from `now`.
    pub fn from_pairs(
        pairs: &[(String, String)],
        target: Target,
        now: Micros,
    ) -> Result<SearchRequest, QueryError> {
        let mut request = SearchRequest::default();
        for (name, value) in pairs {
            let value = value.as_str();
            if let Some(filter) = filters::lookup(name, target) {
                add_value(&mut request, filter, value)?;
                continue;
            }
            match name.as_str() {
                "from" | "to" => {
                    let micros = parse_time(value, now).map_err(|reason| invalid(name, reason))?;
                    if name == "from" {
                        request.from = Some(micros);
                    } else {
                        request.to = Some(micros);
                    }
                }
                "q" => request.q = Some(value.to_string()),
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
        for filter in FILTERS {
            if let Some(needed) = filter.requires
                && request.filters.contains_key(filter.param)
                && !request.filters.contains_key(needed)
            {
                return Err(invalid(filter.param, format!("needs a `{needed}`")));
            }
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

    /// The values given for the filter `param` (none when not given).
    pub fn values(&self, param: &str) -> &[String] {
        self.filters.get(param).map_or(&[], Vec::as_slice)
    }

    /// The value of the bool filter `param`, if given.
    pub fn flag(&self, param: &str) -> Option<bool> {
        self.values(param).first().map(|value| value == "true")
    }

    /// A fingerprint of everything but the paging, so a cursor can't be reused
    /// with other filters. Derived from the whole filter map: a new filter is
    /// covered without being listed.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&self.q, &self.filters, self.sort).hash(&mut hasher);
        hasher.finish()
    }
}

impl std::hash::Hash for Sort {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (*self as u8).hash(state);
    }
}

/// The request's side of a facet dimension.
impl Dimension {
    /// The request's filter on this dimension as (fast field, any of these values),
    /// when a collector can test it from that column alone.
    pub fn column_filter(self, request: &SearchRequest) -> Option<(&'static str, Vec<String>)> {
        Some((self.column()?, request.values(self.name()).to_vec()))
    }

    /// Whether the request filters on this dimension (`step` and `dropoff` count for `flow`).
    pub fn is_filtered(self, request: &SearchRequest) -> bool {
        self.filters()
            .any(|filter| request.filters.contains_key(filter.param))
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
            0,
        )
        .unwrap();
        assert_eq!(request.values("channel"), ["web", "whatsapp"]);
        assert_eq!(request.flag("flagged"), Some(true));
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
            let err =
                SearchRequest::from_pairs(&pairs(&[bad]), Target::Conversations, 0).unwrap_err();
            assert!(
                matches!(err, QueryError::InvalidParameter { .. }),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn invalid_query_names_the_position() {
        let err = SearchRequest::from_pairs(&pairs(&[("q", "(refund")]), Target::Conversations, 0)
            .unwrap_err();
        assert!(
            matches!(err, QueryError::InvalidQuery { position: 0, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn every_filter_changes_the_fingerprint() {
        let base = pairs(&[("flow", "f")]);
        let fingerprint = |pairs: &[(String, String)]| {
            SearchRequest::from_pairs(pairs, Target::Messages, 0)
                .unwrap()
                .fingerprint()
        };
        for filter in FILTERS {
            let value = match filter.kind {
                Kind::Bool => "false",
                Kind::Multi => "user",
            };
            let mut with = base.clone();
            with.push((filter.param.to_string(), value.to_string()));
            assert_ne!(fingerprint(&base), fingerprint(&with), "{}", filter.param);
        }
    }
}
