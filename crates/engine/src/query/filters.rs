//! The filter table: every search filter, once.
//!
//! One row per query-string filter says how its values are read, which index
//! field it narrows, which facet dimension it counts in, which searches take
//! it and how the UI shows it. Parsing ([`super::SearchRequest::from_pairs`]),
//! the cursor fingerprint, query building ([`super::build`]), the facets of
//! conversation search, the OpenAPI parameters and the UI's sidebar
//! (`GET /v1/filters`) are all derived from [`FILTERS`].
//!
//! Adding a filter: a row here, the index field it names in
//! `index-schema/schema.toml` filled in `index/document.rs`, and a test.

/// Which searchable thing a request is for: parameters differ slightly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Conversations,
    Messages,
    /// `/nodes`, `/tags`, `/labels`, `/flows`: filters only, no paging.
    Aggregates,
}
use convlog_core::normalize_label;
use convlog_querylang::Role;

/// How a filter's values are read from the query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Repeatable; a document matches any of the values.
    Multi,
    /// `true` or `false`; the last one given counts.
    Bool,
}

/// How a filter narrows the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clause {
    /// Any of the values, on this raw indexed field (a bool as `"true"`/`"false"`).
    AnyOf(&'static str),
    /// One part of the flow clause: `flow`, `step` and `dropoff` are matched
    /// together (a step within its flow, a drop-off at that step).
    Flow,
}

/// Which documents carry a filter's field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Message documents too: what a message says of itself (its flow, node,
    /// intent, role) or what never changes (the channel).
    Message,
    /// Only the conversation document: review and tagging change it, and a
    /// change must not rewrite every message. Message search keeps the
    /// messages of the conversations that pass it.
    Conversation,
}

/// The facet dimension a filter counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Facet {
    /// Not counted.
    None,
    /// A dimension of its own, named by the parameter, counting the values of
    /// the fast field `counted`. With `disjunctive`, the collector tests the
    /// filter from the [`Clause::AnyOf`] field's column and counts the
    /// dimension in the main pass; otherwise it gets a pass of its own.
    Own {
        counted: &'static str,
        disjunctive: bool,
    },
    /// Part of another filter's dimension (a step is part of `flow`).
    Of(&'static str),
}

/// How the UI shows a filter in its sidebar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Section {
    pub title: &'static str,
    /// The values get a search box (many values).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub searchable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<&'static str>,
    /// Shown when the dimension has no values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub empty: Option<&'static str>,
}

/// One search filter.
#[derive(Debug, Clone, Copy)]
pub struct Filter {
    /// The query-string parameter.
    pub param: &'static str,
    pub kind: Kind,
    /// What a value means, for the API description.
    pub description: &'static str,
    /// Checks and normalises one value (`Kind::Multi` only).
    pub normalize: fn(&str) -> Result<String, String>,
    /// The values it takes, when they are a fixed few (else any text).
    pub choices: &'static [&'static str],
    pub clause: Clause,
    pub scope: Scope,
    pub facet: Facet,
    /// The searches that take it.
    pub targets: &'static [Target],
    /// A filter that must be given with it.
    pub requires: Option<&'static str>,
    pub section: Option<Section>,
}

const ALL: &[Target] = &[Target::Conversations, Target::Messages, Target::Aggregates];

fn as_is(value: &str) -> Result<String, String> {
    Ok(value.to_string())
}

fn lowercase(value: &str) -> Result<String, String> {
    Ok(value.to_ascii_lowercase())
}

fn label(value: &str) -> Result<String, String> {
    normalize_label(value).map_err(str::to_string)
}

fn role(value: &str) -> Result<String, String> {
    Role::parse(value)
        .map(|role| role.as_str().to_string())
        .ok_or_else(|| format!("{value:?} is not user, bot, agent or system"))
}

const fn section(title: &'static str) -> Section {
    Section {
        title,
        searchable: false,
        hint: None,
        empty: None,
    }
}

/// Every filter, in the UI's sidebar order.
pub static FILTERS: &[Filter] = &[
    Filter {
        param: "channel",
        kind: Kind::Multi,
        description: "Channel the conversation came in on (case-insensitive).",
        normalize: lowercase,
        choices: &[],
        clause: Clause::AnyOf("channel"),
        scope: Scope::Message,
        facet: Facet::Own {
            counted: "channel",
            disjunctive: true,
        },
        targets: ALL,
        requires: None,
        section: Some(section("Source")),
    },
    Filter {
        param: "tag",
        kind: Kind::Multi,
        description: "A tag the tagging job gave the conversation.",
        normalize: as_is,
        choices: &[],
        clause: Clause::AnyOf("tag"),
        scope: Scope::Conversation,
        facet: Facet::Own {
            counted: "tag",
            disjunctive: true,
        },
        targets: ALL,
        requires: None,
        section: Some(section("Tags")),
    },
    Filter {
        param: "flagged",
        kind: Kind::Bool,
        description: "Whether a reviewer flagged the conversation.",
        normalize: as_is,
        choices: &[],
        clause: Clause::AnyOf("flagged"),
        scope: Scope::Conversation,
        facet: Facet::Own {
            counted: "flagged",
            disjunctive: true,
        },
        targets: ALL,
        requires: None,
        section: Some(section("Flagged")),
    },
    Filter {
        param: "label",
        kind: Kind::Multi,
        description: "A reviewer's label (case-insensitive).",
        normalize: label,
        choices: &[],
        clause: Clause::AnyOf("label"),
        scope: Scope::Conversation,
        facet: Facet::Own {
            counted: "label",
            disjunctive: true,
        },
        targets: ALL,
        requires: None,
        section: Some(Section {
            empty: Some("No labels in this range yet."),
            ..section("Labels")
        }),
    },
    Filter {
        param: "flow",
        kind: Kind::Multi,
        description: "A flow the conversation entered.",
        normalize: as_is,
        choices: &[],
        clause: Clause::Flow,
        scope: Scope::Message,
        facet: Facet::Own {
            counted: "flow",
            disjunctive: false,
        },
        targets: ALL,
        requires: None,
        section: Some(Section {
            searchable: true,
            ..section("Flows")
        }),
    },
    Filter {
        param: "step",
        kind: Kind::Multi,
        description: "A step of the `flow` the conversation reached.",
        normalize: as_is,
        choices: &[],
        clause: Clause::Flow,
        scope: Scope::Message,
        facet: Facet::Of("flow"),
        targets: ALL,
        requires: Some("flow"),
        section: None,
    },
    Filter {
        param: "dropoff",
        kind: Kind::Bool,
        description: "Whether the conversation dropped off (in the `flow`, at the `step` when given).",
        normalize: as_is,
        choices: &[],
        clause: Clause::Flow,
        scope: Scope::Conversation,
        facet: Facet::Of("flow"),
        targets: ALL,
        requires: None,
        section: None,
    },
    Filter {
        param: "node",
        kind: Kind::Multi,
        description: "A dialog node the conversation passed through.",
        normalize: as_is,
        choices: &[],
        clause: Clause::AnyOf("node"),
        scope: Scope::Message,
        facet: Facet::Own {
            counted: "prompt_node",
            disjunctive: true,
        },
        targets: ALL,
        requires: None,
        section: Some(Section {
            searchable: true,
            hint: Some("prompt nodes"),
            ..section("Nodes")
        }),
    },
    Filter {
        param: "intent",
        kind: Kind::Multi,
        description: "An intent the NLU recognised in a user message.",
        normalize: as_is,
        choices: &[],
        clause: Clause::AnyOf("intent"),
        scope: Scope::Message,
        facet: Facet::Own {
            counted: "intent",
            disjunctive: true,
        },
        targets: ALL,
        requires: None,
        section: Some(Section {
            searchable: true,
            ..section("Intents")
        }),
    },
    Filter {
        param: "role",
        kind: Kind::Multi,
        description: "Who sent the message: user, bot, agent or system.",
        normalize: role,
        choices: &["user", "bot", "agent", "system"],
        clause: Clause::AnyOf("role"),
        scope: Scope::Message,
        facet: Facet::None,
        targets: &[Target::Messages],
        requires: None,
        section: None,
    },
];

/// The filter named `param` that `target` takes.
pub fn lookup(param: &str, target: Target) -> Option<&'static Filter> {
    FILTERS
        .iter()
        .find(|filter| filter.param == param && filter.targets.contains(&target))
}

/// The filter named `param`. Panics on a name the table lacks (a bug).
pub fn get(param: &str) -> &'static Filter {
    FILTERS
        .iter()
        .find(|filter| filter.param == param)
        .unwrap_or_else(|| panic!("no filter `{param}` in the filter table"))
}

impl Filter {
    /// The facet dimension it counts in, if any.
    pub fn dimension(&self) -> Option<&'static str> {
        match self.facet {
            Facet::None => None,
            Facet::Own { .. } => Some(self.param),
            Facet::Of(dimension) => Some(dimension),
        }
    }
}

/// A facet dimension of conversation search: a filter with a [`Facet::Own`].
#[derive(Debug, Clone, Copy)]
pub struct Dimension(&'static Filter);

impl PartialEq for Dimension {
    fn eq(&self, other: &Dimension) -> bool {
        self.0.param == other.0.param
    }
}

impl Dimension {
    /// Every dimension, in table order.
    pub fn all() -> impl Iterator<Item = Dimension> {
        FILTERS
            .iter()
            .filter(|filter| matches!(filter.facet, Facet::Own { .. }))
            .map(Dimension)
    }

    /// Its name in the response: the parameter.
    pub fn name(self) -> &'static str {
        self.0.param
    }

    /// The fast field counted for it.
    pub fn field(self) -> &'static str {
        match self.0.facet {
            Facet::Own { counted, .. } => counted,
            _ => unreachable!("dimensions have a facet of their own"),
        }
    }

    /// The filters counted in it (its own and those [`Facet::Of`] it).
    pub fn filters(self) -> impl Iterator<Item = &'static Filter> {
        FILTERS
            .iter()
            .filter(move |filter| filter.dimension() == Some(self.name()))
    }

    /// The column a collector can test the dimension's filter from, when it can.
    pub fn column(self) -> Option<&'static str> {
        match (self.0.facet, self.0.clause) {
            (
                Facet::Own {
                    disjunctive: true, ..
                },
                Clause::AnyOf(field),
            ) if self.filters().count() == 1 => Some(field),
            _ => None,
        }
    }
}

/// What `GET /v1/filters` answers: the table as the UI and clients read it.
#[derive(Debug, serde::Serialize)]
pub struct Descriptor {
    pub param: &'static str,
    /// `multi` or `bool`.
    pub kind: &'static str,
    pub description: &'static str,
    /// The key of its counts in a search's `facets`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facet: Option<&'static str>,
    /// `conversations`, `messages`, `aggregates` (nodes, tags, labels, flows).
    pub targets: Vec<&'static str>,
    /// The values it takes, when they are a fixed few.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub choices: &'static [&'static str],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requires: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section: Option<Section>,
}

/// The table described for clients.
pub fn describe() -> Vec<Descriptor> {
    FILTERS
        .iter()
        .map(|filter| Descriptor {
            param: filter.param,
            kind: match filter.kind {
                Kind::Multi => "multi",
                Kind::Bool => "bool",
            },
            description: filter.description,
            facet: filter.dimension(),
            targets: filter
                .targets
                .iter()
                .map(|target| match target {
                    Target::Conversations => "conversations",
                    Target::Messages => "messages",
                    Target::Aggregates => "aggregates",
                })
                .collect(),
            choices: filter.choices,
            requires: filter.requires,
            section: filter.section,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_unique_and_references_resolve() {
        for (i, filter) in FILTERS.iter().enumerate() {
            assert!(
                FILTERS[..i].iter().all(|f| f.param != filter.param),
                "`{}` twice",
                filter.param
            );
            for named in [filter.requires, filter.dimension()].into_iter().flatten() {
                assert!(FILTERS.iter().any(|f| f.param == named), "{named}");
            }
            if let Facet::Of(dimension) = filter.facet {
                assert!(matches!(get(dimension).facet, Facet::Own { .. }));
            }
        }
    }

    #[test]
    fn every_index_field_named_exists() {
        let schema = crate::index::IndexSchema::load().unwrap().schema;
        for filter in FILTERS {
            let mut names = Vec::new();
            if let Clause::AnyOf(field) = filter.clause {
                names.push(field);
            }
            if let Facet::Own { counted, .. } = filter.facet {
                names.push(counted);
            }
            for name in names {
                assert!(schema.get_field(name).is_ok(), "{}: {name}", filter.param);
            }
        }
    }

    #[test]
    fn flow_is_counted_in_its_own_pass_and_the_others_disjunctively() {
        let columns: Vec<_> = Dimension::all().map(|d| (d.name(), d.column())).collect();
        assert_eq!(
            columns,
            [
                ("channel", Some("channel")),
                ("tag", Some("tag")),
                ("flagged", Some("flagged")),
                ("label", Some("label")),
                ("flow", None),
                ("node", Some("node")),
                ("intent", Some("intent")),
            ]
        );
    }
}
