//! The `[tagging]` section of `config.toml`: the raw TOML shapes and their
//! validation into the [`Rule`]s that [`super::rules::evaluate`] runs.
//!
//! Raw and validated are two types so that everything the engine sees has been
//! checked once, at start-up, and every error names the rule at fault. Disabled
//! rules are validated too: switching one on later must not be what breaks a
//! deployment.

use serde::Deserialize;
use std::collections::BTreeSet;

/// Names of the built-in rules (and their tags), in the order they are configured.
pub const BUILTIN_RULES: [&str; 8] = [
    "unidentified_response",
    "repeated_unidentified",
    "dropoff",
    "agent_handoff",
    "low_confidence",
    "user_repeated",
    "no_bot_reply",
    "long_conversation",
];

/// The roles a keywords rule may be limited to.
const ROLES: [&str; 4] = ["user", "bot", "agent", "system"];

/// The `[tagging]` table as written.
// Default is written by hand, not derived: an absent `[tagging]` table must mean
// the documented defaults (batch_size 512, built-ins on), not zeroes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTagging {
    /// Threads of the tagging job's pool; 0 means one per core.
    pub threads: usize,
    /// Conversations per batch of the tagging job.
    pub batch_size: usize,
    /// `[tagging.rules.*]`: the built-in rules.
    pub rules: RawBuiltins,
    /// `[[tagging.custom]]`: user-defined rules.
    pub custom: Vec<RawCustomRule>,
}

impl Default for RawTagging {
    fn default() -> RawTagging {
        RawTagging {
            threads: 0,
            batch_size: 512,
            rules: RawBuiltins::default(),
            custom: Vec::new(),
        }
    }
}

/// `[tagging.rules]`: one table per built-in rule, each optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawBuiltins {
    /// `[tagging.rules.unidentified_response]`.
    pub unidentified_response: RawToggle,
    /// `[tagging.rules.repeated_unidentified]`.
    pub repeated_unidentified: RawCountRule,
    /// `[tagging.rules.dropoff]`.
    pub dropoff: RawToggle,
    /// `[tagging.rules.agent_handoff]`.
    pub agent_handoff: RawToggle,
    /// `[tagging.rules.low_confidence]`.
    pub low_confidence: RawLowConfidence,
    /// `[tagging.rules.user_repeated]`.
    pub user_repeated: RawCountRule,
    /// `[tagging.rules.no_bot_reply]`.
    pub no_bot_reply: RawToggle,
    /// `[tagging.rules.long_conversation]`.
    pub long_conversation: RawLongConversation,
}

/// A built-in rule without parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawToggle {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Version stored with its tags; raising it re-tags every conversation.
    pub version: u32,
}

impl Default for RawToggle {
    fn default() -> RawToggle {
        RawToggle {
            enabled: true,
            version: 1,
        }
    }
}

/// A built-in rule that needs something to happen at least `n` times.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCountRule {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Version stored with its tags.
    pub version: u32,
    /// How many times, at least (default 2).
    pub n: usize,
}

impl Default for RawCountRule {
    fn default() -> RawCountRule {
        RawCountRule {
            enabled: true,
            version: 1,
            n: 2,
        }
    }
}

/// `[tagging.rules.low_confidence]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLowConfidence {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Version stored with its tags.
    pub version: u32,
    /// A user message's confidence below this (0..=1) fires the rule (default 0.5).
    pub threshold: f64,
}

impl Default for RawLowConfidence {
    fn default() -> RawLowConfidence {
        RawLowConfidence {
            enabled: true,
            version: 1,
            threshold: 0.5,
        }
    }
}

/// `[tagging.rules.long_conversation]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLongConversation {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Version stored with its tags.
    pub version: u32,
    /// More messages than this fires the rule (default 50).
    pub max_messages: usize,
}

impl Default for RawLongConversation {
    fn default() -> RawLongConversation {
        RawLongConversation {
            enabled: true,
            version: 1,
            max_messages: 50,
        }
    }
}

/// One `[[tagging.custom]]` entry as written.
// One flat struct rather than a serde enum tagged by `kind`: a wrong kind, metric,
// op or role then becomes a RuleError naming the rule, not a bare TOML error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCustomRule {
    /// The tag the rule gives: `[A-Za-z0-9._-]{1,64}`, not a built-in's name.
    pub name: String,
    /// Version stored with its tags (default 1).
    #[serde(default = "one")]
    pub version: u32,
    /// Whether the rule runs (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `keywords` or `threshold`.
    pub kind: Option<String>,
    /// Keywords: only messages of this role (`user`, `bot`, `agent`, `system`).
    pub role: Option<String>,
    /// Keywords: words or phrases to look for.
    pub words: Option<Vec<String>>,
    /// Keywords: how many messages must match (default 1).
    pub min_matches: Option<usize>,
    /// Threshold: the metric measured.
    pub metric: Option<String>,
    /// Threshold: `>`, `>=`, `<`, `<=` or `==`.
    pub op: Option<String>,
    /// Threshold: the value the metric is compared with.
    pub value: Option<f64>,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// Validated rules.
#[derive(Debug, Clone, PartialEq)]
pub struct TaggingConfig {
    /// Threads of the tagging job's pool; 0 means one per core.
    pub threads: usize,
    /// Conversations per batch, at least 1.
    pub batch_size: usize,
    /// The enabled rules: built-ins in [`BUILTIN_RULES`] order, then custom rules as written.
    pub rules: Vec<Rule>,
}

/// One enabled rule, ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The rule's name, which is also the tag it gives.
    pub name: String,
    /// Stored with the rule's tags; at least 1.
    pub version: u32,
    /// What the rule looks for.
    pub kind: RuleKind,
}

/// What a rule looks for, with its validated parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    /// A message has `unidentified: true`.
    UnidentifiedResponse,
    /// At least `n` unidentified messages with no identified bot message between them.
    RepeatedUnidentified {
        /// Shortest run that counts, at least 1.
        n: usize,
    },
    /// The last message with a flow doesn't complete it.
    Dropoff,
    /// A message has role `agent`.
    AgentHandoff,
    /// A user message's confidence is below `threshold`.
    LowConfidence {
        /// In `0..=1`.
        threshold: f64,
    },
    /// The user sent the same normalised text at least `n` times.
    UserRepeated {
        /// At least 1.
        n: usize,
    },
    /// The last message is from the user and the session has ended.
    NoBotReply,
    /// More than `max_messages` messages.
    LongConversation {
        /// At least 1.
        max_messages: usize,
    },
    /// At least `min_matches` messages (of `role`, if given) contain one of `phrases`.
    Keywords {
        /// `user`, `bot`, `agent` or `system`; `None` for any role.
        role: Option<String>,
        /// Each phrase as its word tokens (see [`super::rules::tokenize`]); none is empty.
        phrases: Vec<Vec<String>>,
        /// At least 1.
        min_matches: usize,
    },
    /// `metric op value` holds for the conversation.
    Threshold {
        /// What is measured.
        metric: Metric,
        /// How it is compared.
        op: Op,
        /// A finite number.
        value: f64,
    },
}

/// A measure of a whole conversation that a threshold rule compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Number of messages.
    MessageCount,
    /// Number of messages with role `user`.
    UserMessages,
    /// Number of messages with role `bot`.
    BotMessages,
    /// Number of messages with `unidentified: true`.
    UnidentifiedCount,
    /// Minutes from the first message to the last.
    DurationMinutes,
    /// Lowest confidence of a user message; a conversation without one has no value.
    MinConfidence,
    /// Longest silence between two consecutive messages, in minutes (0 for one message).
    MaxGapMinutes,
}

impl Metric {
    /// Every metric, in documentation order.
    pub const ALL: [Metric; 7] = [
        Metric::MessageCount,
        Metric::UserMessages,
        Metric::BotMessages,
        Metric::UnidentifiedCount,
        Metric::DurationMinutes,
        Metric::MinConfidence,
        Metric::MaxGapMinutes,
    ];

    /// The name used in `config.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::MessageCount => "message_count",
            Metric::UserMessages => "user_messages",
            Metric::BotMessages => "bot_messages",
            Metric::UnidentifiedCount => "unidentified_count",
            Metric::DurationMinutes => "duration_minutes",
            Metric::MinConfidence => "min_confidence",
            Metric::MaxGapMinutes => "max_gap_minutes",
        }
    }

    /// The metric of that name, if there is one.
    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|metric| metric.name() == name)
    }
}

/// A comparison of a threshold rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `==`.
    Eq,
}

impl Op {
    /// Every comparison.
    pub const ALL: [Op; 5] = [Op::Gt, Op::Ge, Op::Lt, Op::Le, Op::Eq];

    /// The symbol used in `config.toml`.
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
        }
    }

    /// The comparison written as `symbol`, if there is one.
    pub fn parse(symbol: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.symbol() == symbol)
    }

    /// Whether `left op right` holds.
    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Op::Gt => left > right,
            Op::Ge => left >= right,
            Op::Lt => left < right,
            Op::Le => left <= right,
            Op::Eq => left == right,
        }
    }
}

/// A rule that can't be used: its name and why.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("tagging rule `{rule}`: {reason}")]
pub struct RuleError {
    /// The rule's name (for a setting of the whole section, the setting's key).
    pub rule: String,
    /// What is wrong with it.
    pub reason: String,
}

fn rule_error(rule: &str, reason: impl Into<String>) -> RuleError {
    RuleError {
        rule: rule.to_string(),
        reason: reason.into(),
    }
}

impl RawTagging {
    /// Checks every rule, enabled or not, and returns the enabled ones.
    pub fn validate(&self) -> Result<TaggingConfig, RuleError> {
        if self.batch_size == 0 {
            return Err(rule_error("batch_size", "must be at least 1"));
        }
        let raw = &self.rules;
        let builtins = [
            (
                "unidentified_response",
                raw.unidentified_response.enabled,
                raw.unidentified_response.version,
                Ok(RuleKind::UnidentifiedResponse),
            ),
            (
                "repeated_unidentified",
                raw.repeated_unidentified.enabled,
                raw.repeated_unidentified.version,
                at_least_one("n", raw.repeated_unidentified.n)
                    .map(|n| RuleKind::RepeatedUnidentified { n }),
            ),
            (
                "dropoff",
                raw.dropoff.enabled,
                raw.dropoff.version,
                Ok(RuleKind::Dropoff),
            ),
            (
                "agent_handoff",
                raw.agent_handoff.enabled,
                raw.agent_handoff.version,
                Ok(RuleKind::AgentHandoff),
            ),
            (
                "low_confidence",
                raw.low_confidence.enabled,
                raw.low_confidence.version,
                confidence_threshold(raw.low_confidence.threshold)
                    .map(|threshold| RuleKind::LowConfidence { threshold }),
            ),
            (
                "user_repeated",
                raw.user_repeated.enabled,
                raw.user_repeated.version,
                at_least_one("n", raw.user_repeated.n).map(|n| RuleKind::UserRepeated { n }),
            ),
            (
                "no_bot_reply",
                raw.no_bot_reply.enabled,
                raw.no_bot_reply.version,
                Ok(RuleKind::NoBotReply),
            ),
            (
                "long_conversation",
                raw.long_conversation.enabled,
                raw.long_conversation.version,
                at_least_one("max_messages", raw.long_conversation.max_messages)
                    .map(|max_messages| RuleKind::LongConversation { max_messages }),
            ),
        ];
        let mut rules = Vec::new();
        for (name, enabled, version, kind) in builtins {
            check_version(name, version)?;
            let kind = kind.map_err(|reason| rule_error(name, reason))?;
            if enabled {
                rules.push(Rule {
                    name: name.to_string(),
                    version,
                    kind,
                });
            }
        }

        let mut names = BTreeSet::new();
        for custom in &self.custom {
            let rule = custom.validate()?;
            if BUILTIN_RULES.contains(&rule.name.as_str()) {
                return Err(rule_error(
                    &rule.name,
                    "has the name of a built-in rule; configure it under [tagging.rules] instead",
                ));
            }
            if !names.insert(rule.name.clone()) {
                return Err(rule_error(&rule.name, "is defined more than once"));
            }
            if custom.enabled {
                rules.push(rule);
            }
        }
        Ok(TaggingConfig {
            threads: self.threads,
            batch_size: self.batch_size,
            rules,
        })
    }
}

fn check_version(rule: &str, version: u32) -> Result<(), RuleError> {
    if version == 0 {
        return Err(rule_error(rule, "version must be at least 1"));
    }
    Ok(())
}

fn at_least_one(key: &str, value: usize) -> Result<usize, String> {
    if value == 0 {
        return Err(format!("{key} must be at least 1"));
    }
    Ok(value)
}

fn confidence_threshold(threshold: f64) -> Result<f64, String> {
    // Written as a range check so NaN is refused too.
    if !(0.0..=1.0).contains(&threshold) {
        return Err(format!(
            "threshold must be between 0 and 1, not {threshold}"
        ));
    }
    Ok(threshold)
}

/// Whether `name` may name a rule: `[A-Za-z0-9._-]{1,64}`.
fn is_rule_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl RawCustomRule {
    /// The rule this entry describes (whether enabled or not).
    fn validate(&self) -> Result<Rule, RuleError> {
        let name = self.name.as_str();
        if !is_rule_name(name) {
            return Err(rule_error(
                name,
                "name must be 1 to 64 letters, digits, `.`, `_` or `-`",
            ));
        }
        check_version(name, self.version)?;
        let keyword_fields = [
            ("role", self.role.is_some()),
            ("words", self.words.is_some()),
            ("min_matches", self.min_matches.is_some()),
        ];
        let threshold_fields = [
            ("metric", self.metric.is_some()),
            ("op", self.op.is_some()),
            ("value", self.value.is_some()),
        ];
        // A field of the other kind is most likely a mistake (a wrong `kind`, or a
        // rule half-edited from one kind into the other): say so rather than ignore it.
        let refuse = |fields: &[(&str, bool)], kind: &str| match fields.iter().find(|f| f.1) {
            Some((field, _)) => Err(rule_error(
                name,
                format!("`{field}` does not apply to a {kind} rule"),
            )),
            None => Ok(()),
        };
        let kind = match self.kind.as_deref() {
            Some("keywords") => {
                refuse(&threshold_fields, "keywords")?;
                self.keywords(name)?
            }
            Some("threshold") => {
                refuse(&keyword_fields, "threshold")?;
                self.threshold(name)?
            }
            Some(other) => {
                return Err(rule_error(
                    name,
                    format!("unknown kind `{other}` (expected keywords or threshold)"),
                ));
            }
            None => {
                return Err(rule_error(name, "missing `kind` (keywords or threshold)"));
            }
        };
        Ok(Rule {
            name: name.to_string(),
            version: self.version,
            kind,
        })
    }

    fn keywords(&self, name: &str) -> Result<RuleKind, RuleError> {
        let role = match &self.role {
            Some(role) if !ROLES.contains(&role.as_str()) => {
                return Err(rule_error(
                    name,
                    format!("unknown role `{role}` (expected user, bot, agent or system)"),
                ));
            }
            role => role.clone(),
        };
        let words = self
            .words
            .as_ref()
            .ok_or_else(|| rule_error(name, "a keywords rule needs `words`"))?;
        if words.is_empty() {
            return Err(rule_error(name, "`words` is empty"));
        }
        let mut phrases = Vec::with_capacity(words.len());
        for word in words {
            let phrase = super::rules::tokenize(word);
            // A phrase without word characters could never match: it is a typo.
            if phrase.is_empty() {
                return Err(rule_error(
                    name,
                    format!("`words` entry {word:?} has no letters or digits"),
                ));
            }
            phrases.push(phrase);
        }
        let min_matches = at_least_one("min_matches", self.min_matches.unwrap_or(1))
            .map_err(|reason| rule_error(name, reason))?;
        Ok(RuleKind::Keywords {
            role,
            phrases,
            min_matches,
        })
    }

    fn threshold(&self, name: &str) -> Result<RuleKind, RuleError> {
        let metric = self
            .metric
            .as_deref()
            .ok_or_else(|| rule_error(name, "a threshold rule needs `metric`"))?;
        let metric = Metric::parse(metric).ok_or_else(|| {
            let known: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
            rule_error(
                name,
                format!(
                    "unknown metric `{metric}` (expected one of {})",
                    known.join(", ")
                ),
            )
        })?;
        let op = self
            .op
            .as_deref()
            .ok_or_else(|| rule_error(name, "a threshold rule needs `op`"))?;
        let op = Op::parse(op).ok_or_else(|| {
            rule_error(
                name,
                format!("unknown op `{op}` (expected >, >=, <, <= or ==)"),
            )
        })?;
        let value = self
            .value
            .ok_or_else(|| rule_error(name, "a threshold rule needs `value`"))?;
        if !value.is_finite() {
            return Err(rule_error(name, "value must be a finite number"));
        }
        Ok(RuleKind::Threshold { metric, op, value })
    }
}

impl TaggingConfig {
    /// A fingerprint of every enabled rule's (name, version): stored with tags so a change triggers re-evaluation.
    // Sorted by name so that reordering rules in the file is not a change.
    pub fn rule_versions(&self) -> Vec<(String, u32)> {
        let mut versions: Vec<(String, u32)> = self
            .rules
            .iter()
            .map(|rule| (rule.name.clone(), rule.version))
            .collect();
        versions.sort();
        versions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Document {
        tagging: RawTagging,
    }

    fn parse(text: &str) -> RawTagging {
        toml::from_str::<Document>(text)
            .unwrap_or_else(|err| panic!("{err}"))
            .tagging
    }

    fn validate(text: &str) -> Result<TaggingConfig, RuleError> {
        parse(text).validate()
    }

    /// The `[tagging]` section of the project's `config.toml` as written, so the
    /// tests below fail when the documented defaults and the rules disagree.
    fn project_tagging() -> String {
        let text = crate::config::DEFAULT_CONFIG;
        let start = text
            .find("\n[tagging]\n")
            .expect("config.toml has [tagging]")
            + 1;
        let other_section = |line: &str| {
            line.starts_with('[') && !line.starts_with("[tagging") && !line.starts_with("[[tagging")
        };
        text[start..]
            .lines()
            .take_while(|line| !other_section(line))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn default_rules() -> Vec<Rule> {
        let rule = |name: &str, kind| Rule {
            name: name.to_string(),
            version: 1,
            kind,
        };
        vec![
            rule("unidentified_response", RuleKind::UnidentifiedResponse),
            rule(
                "repeated_unidentified",
                RuleKind::RepeatedUnidentified { n: 2 },
            ),
            rule("dropoff", RuleKind::Dropoff),
            rule("agent_handoff", RuleKind::AgentHandoff),
            rule("low_confidence", RuleKind::LowConfidence { threshold: 0.5 }),
            rule("user_repeated", RuleKind::UserRepeated { n: 2 }),
            rule("no_bot_reply", RuleKind::NoBotReply),
            rule(
                "long_conversation",
                RuleKind::LongConversation { max_messages: 50 },
            ),
        ]
    }

    #[test]
    fn config_toml_gives_the_eight_builtins_with_their_defaults() {
        let config = validate(&project_tagging()).unwrap();
        assert_eq!(config.threads, 0);
        assert_eq!(config.batch_size, 512);
        assert_eq!(config.rules, default_rules());
    }

    #[test]
    fn config_toml_spells_out_every_key_the_defaults_have() {
        // The serde defaults would hide a key left out of the documented file, so
        // look at the TOML itself.
        let table: toml::Table = project_tagging().parse().unwrap();
        let tagging = table["tagging"].as_table().unwrap();
        assert_eq!(tagging["threads"].as_integer(), Some(0));
        assert_eq!(tagging["batch_size"].as_integer(), Some(512));
        let rules = tagging["rules"].as_table().unwrap();
        assert_eq!(rules.len(), BUILTIN_RULES.len());
        for name in BUILTIN_RULES {
            let rule = rules[name].as_table().unwrap();
            assert_eq!(rule["enabled"].as_bool(), Some(true), "{name}");
            assert_eq!(rule["version"].as_integer(), Some(1), "{name}");
        }
        let param = |rule: &str, key: &str| rules[rule][key].clone();
        assert_eq!(param("repeated_unidentified", "n").as_integer(), Some(2));
        assert_eq!(param("user_repeated", "n").as_integer(), Some(2));
        assert_eq!(param("low_confidence", "threshold").as_float(), Some(0.5));
        assert_eq!(
            param("long_conversation", "max_messages").as_integer(),
            Some(50)
        );
    }

    #[test]
    fn an_empty_or_absent_section_means_the_defaults() {
        assert_eq!(validate("[tagging]\n").unwrap().rules, default_rules());
        assert_eq!(
            RawTagging::default().validate().unwrap().rules,
            default_rules()
        );
        assert_eq!(RawTagging::default().validate().unwrap().batch_size, 512);
    }

    #[test]
    fn commented_out_examples_in_config_toml_are_valid_rules() {
        // Uncomment the lines that are TOML (a table header or `key = value`),
        // leaving the prose around them a comment.
        let is_toml = |line: &str| {
            line.starts_with("[[")
                || line.split_once(" = ").is_some_and(|(key, _)| {
                    !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                })
        };
        let uncommented: String = project_tagging()
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if is_toml(rest) => rest,
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = validate(&uncommented).unwrap();
        assert_eq!(config.rules.len(), 10);
        assert_eq!(
            config.rules[8],
            Rule {
                name: "refund_request".into(),
                version: 1,
                kind: RuleKind::Keywords {
                    role: Some("user".into()),
                    phrases: vec![
                        vec!["refund".into()],
                        vec!["money".into(), "back".into()],
                        vec!["chargeback".into()],
                    ],
                    min_matches: 1,
                },
            }
        );
        assert_eq!(
            config.rules[9].kind,
            RuleKind::Threshold {
                metric: Metric::DurationMinutes,
                op: Op::Gt,
                value: 30.0,
            }
        );
    }

    #[test]
    fn builtins_can_be_tuned_and_switched_off() {
        let config = validate(
            r#"
            [tagging]
            threads = 2
            batch_size = 64
            [tagging.rules.dropoff]
            enabled = false
            [tagging.rules.low_confidence]
            threshold = 0.3
            version = 4
            [tagging.rules.user_repeated]
            n = 3
            [tagging.rules.long_conversation]
            max_messages = 100
            "#,
        )
        .unwrap();
        assert_eq!((config.threads, config.batch_size), (2, 64));
        assert!(!config.rules.iter().any(|r| r.name == "dropoff"));
        let find = |name: &str| config.rules.iter().find(|r| r.name == name).unwrap();
        assert_eq!(find("low_confidence").version, 4);
        assert_eq!(
            find("low_confidence").kind,
            RuleKind::LowConfidence { threshold: 0.3 }
        );
        assert_eq!(find("user_repeated").kind, RuleKind::UserRepeated { n: 3 });
        assert_eq!(
            find("long_conversation").kind,
            RuleKind::LongConversation { max_messages: 100 }
        );
        assert_eq!(
            find("repeated_unidentified").kind,
            RuleKind::RepeatedUnidentified { n: 2 }
        );
    }

    #[test]
    fn integers_are_accepted_where_numbers_are_expected() {
        let config = validate(
            r#"
            [tagging.rules.low_confidence]
            threshold = 1
            [[tagging.custom]]
            name = "many"
            kind = "threshold"
            metric = "message_count"
            op = ">="
            value = 10
            "#,
        )
        .unwrap();
        assert!(config.rules.contains(&Rule {
            name: "low_confidence".into(),
            version: 1,
            kind: RuleKind::LowConfidence { threshold: 1.0 },
        }));
        assert_eq!(
            config.rules.last().unwrap().kind,
            RuleKind::Threshold {
                metric: Metric::MessageCount,
                op: Op::Ge,
                value: 10.0,
            }
        );
    }

    #[test]
    fn custom_rules_follow_builtins_in_file_order_and_disabled_ones_are_left_out() {
        let config = validate(
            r#"
            [[tagging.custom]]
            name = "b"
            kind = "keywords"
            words = ["E-mail  address", "Straße"]
            [[tagging.custom]]
            name = "off"
            enabled = false
            kind = "keywords"
            words = ["x"]
            [[tagging.custom]]
            name = "a"
            version = 3
            kind = "threshold"
            metric = "min_confidence"
            op = "<="
            value = 0.2
            "#,
        )
        .unwrap();
        let names: Vec<&str> = config.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(&names[8..], ["b", "a"]);
        assert_eq!(
            config.rules[8].kind,
            RuleKind::Keywords {
                role: None,
                phrases: vec![
                    vec!["e".into(), "mail".into(), "address".into()],
                    vec!["straße".into()],
                ],
                min_matches: 1,
            }
        );
        assert_eq!(config.rules[9].version, 3);
    }

    #[test]
    fn rule_versions_lists_enabled_rules_sorted_by_name() {
        let config = validate(
            r#"
            [tagging.rules.dropoff]
            version = 7
            [tagging.rules.agent_handoff]
            enabled = false
            [[tagging.custom]]
            name = "zz"
            version = 2
            kind = "keywords"
            words = ["x"]
            [[tagging.custom]]
            name = "aa"
            kind = "keywords"
            words = ["x"]
            "#,
        )
        .unwrap();
        let versions = config.rule_versions();
        let expected: Vec<(String, u32)> = [
            ("aa", 1),
            ("dropoff", 7),
            ("long_conversation", 1),
            ("low_confidence", 1),
            ("no_bot_reply", 1),
            ("repeated_unidentified", 1),
            ("unidentified_response", 1),
            ("user_repeated", 1),
            ("zz", 2),
        ]
        .into_iter()
        .map(|(name, version)| (name.to_string(), version))
        .collect();
        assert_eq!(versions, expected);
    }

    #[test]
    fn unknown_keys_are_a_parse_error() {
        for text in [
            "[tagging]\nthread = 1\n",
            "[tagging.rules.dropoff]\nn = 2\n",
            "[tagging.rules.unknown_rule]\nenabled = true\n",
            "[[tagging.custom]]\nname = \"x\"\nkind = \"keywords\"\nword = [\"a\"]\n",
        ] {
            assert!(toml::from_str::<Document>(text).is_err(), "{text}");
        }
    }

    /// Validates `text` and returns the error, which must name `rule`.
    fn error_of(text: &str, rule: &str) -> String {
        let err = validate(text).expect_err(text);
        assert_eq!(err.rule, rule, "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("tagging rule `{rule}`: "))
        );
        err.reason
    }

    #[test]
    fn rejects_n_below_one() {
        let reason = error_of(
            "[tagging.rules.repeated_unidentified]\nn = 0\n",
            "repeated_unidentified",
        );
        assert!(reason.contains("n must be at least 1"), "{reason}");
        error_of("[tagging.rules.user_repeated]\nn = 0\n", "user_repeated");
    }

    #[test]
    fn rejects_a_confidence_threshold_outside_zero_to_one() {
        for value in ["-0.1", "1.01", "nan", "inf"] {
            let reason = error_of(
                &format!("[tagging.rules.low_confidence]\nthreshold = {value}\n"),
                "low_confidence",
            );
            assert!(reason.contains("between 0 and 1"), "{reason}");
        }
        for value in ["0", "0.0", "1.0"] {
            validate(&format!(
                "[tagging.rules.low_confidence]\nthreshold = {value}\n"
            ))
            .unwrap();
        }
    }

    #[test]
    fn rejects_max_messages_zero() {
        error_of(
            "[tagging.rules.long_conversation]\nmax_messages = 0\n",
            "long_conversation",
        );
    }

    #[test]
    fn rejects_version_zero_of_any_rule_even_disabled() {
        for name in BUILTIN_RULES {
            error_of(
                &format!("[tagging.rules.{name}]\nenabled = false\nversion = 0\n"),
                name,
            );
        }
        let reason = error_of(
            "[[tagging.custom]]\nname = \"c\"\nversion = 0\nkind = \"keywords\"\nwords = [\"a\"]\n",
            "c",
        );
        assert!(reason.contains("version"), "{reason}");
    }

    #[test]
    fn rejects_batch_size_zero() {
        error_of("[tagging]\nbatch_size = 0\n", "batch_size");
    }

    #[test]
    fn rejects_empty_words_and_empty_phrases() {
        let custom = |words: &str| {
            format!("[[tagging.custom]]\nname = \"kw\"\nkind = \"keywords\"\nwords = {words}\n")
        };
        assert!(error_of(&custom("[]"), "kw").contains("empty"));
        for words in [r#"["ok", ""]"#, r#"["  "]"#, r#"["?!"]"#] {
            let reason = error_of(&custom(words), "kw");
            assert!(reason.contains("no letters or digits"), "{reason}");
        }
        let reason = error_of(
            "[[tagging.custom]]\nname = \"kw\"\nkind = \"keywords\"\n",
            "kw",
        );
        assert!(reason.contains("needs `words`"), "{reason}");
    }

    #[test]
    fn rejects_min_matches_zero() {
        error_of(
            "[[tagging.custom]]\nname = \"kw\"\nkind = \"keywords\"\nwords = [\"a\"]\nmin_matches = 0\n",
            "kw",
        );
    }

    #[test]
    fn rejects_an_unknown_role() {
        let reason = error_of(
            "[[tagging.custom]]\nname = \"kw\"\nkind = \"keywords\"\nrole = \"User\"\nwords = [\"a\"]\n",
            "kw",
        );
        assert!(reason.contains("unknown role `User`"), "{reason}");
    }

    fn threshold(metric: &str, op: &str, value: &str) -> String {
        format!(
            "[[tagging.custom]]\nname = \"th\"\nkind = \"threshold\"\nmetric = \"{metric}\"\nop = \"{op}\"\nvalue = {value}\n"
        )
    }

    #[test]
    fn rejects_an_unknown_metric_or_op() {
        let reason = error_of(&threshold("messages", ">", "1"), "th");
        assert!(reason.contains("unknown metric `messages`"), "{reason}");
        for op in ["=", "!=", "gt", "=>"] {
            let reason = error_of(&threshold("message_count", op, "1"), "th");
            assert!(reason.contains(&format!("unknown op `{op}`")), "{reason}");
        }
        for metric in Metric::ALL {
            for op in Op::ALL {
                validate(&threshold(metric.name(), op.symbol(), "1.5")).unwrap();
            }
        }
    }

    #[test]
    fn rejects_a_non_finite_threshold_value() {
        error_of(&threshold("message_count", ">", "nan"), "th");
        error_of(&threshold("message_count", ">", "-inf"), "th");
    }

    #[test]
    fn rejects_incomplete_threshold_rules() {
        for (missing, text) in [
            ("metric", "op = \">\"\nvalue = 1\n"),
            ("op", "metric = \"message_count\"\nvalue = 1\n"),
            ("value", "metric = \"message_count\"\nop = \">\"\n"),
        ] {
            let reason = error_of(
                &format!("[[tagging.custom]]\nname = \"th\"\nkind = \"threshold\"\n{text}"),
                "th",
            );
            assert!(reason.contains(&format!("needs `{missing}`")), "{reason}");
        }
    }

    #[test]
    fn rejects_fields_of_the_other_kind() {
        let reason = error_of(
            "[[tagging.custom]]\nname = \"kw\"\nkind = \"keywords\"\nwords = [\"a\"]\nvalue = 3\n",
            "kw",
        );
        assert!(reason.contains("`value` does not apply"), "{reason}");
        let reason = error_of(
            &format!("{}role = \"user\"\n", threshold("message_count", ">", "1")),
            "th",
        );
        assert!(reason.contains("`role` does not apply"), "{reason}");
    }

    #[test]
    fn rejects_an_unknown_or_missing_kind() {
        let reason = error_of("[[tagging.custom]]\nname = \"k\"\nkind = \"regex\"\n", "k");
        assert!(reason.contains("unknown kind `regex`"), "{reason}");
        let reason = error_of("[[tagging.custom]]\nname = \"k\"\nwords = [\"a\"]\n", "k");
        assert!(reason.contains("missing `kind`"), "{reason}");
    }

    #[test]
    fn rejects_duplicate_names_even_when_disabled() {
        let rule = |enabled: bool| {
            format!(
                "[[tagging.custom]]\nname = \"dup\"\nenabled = {enabled}\nkind = \"keywords\"\nwords = [\"a\"]\n"
            )
        };
        let reason = error_of(&format!("{}{}", rule(true), rule(false)), "dup");
        assert!(reason.contains("more than once"), "{reason}");
    }

    #[test]
    fn rejects_a_custom_rule_named_like_a_builtin() {
        for name in BUILTIN_RULES {
            let reason = error_of(
                &format!(
                    "[[tagging.custom]]\nname = \"{name}\"\nkind = \"keywords\"\nwords = [\"a\"]\n"
                ),
                name,
            );
            assert!(reason.contains("built-in"), "{reason}");
        }
    }

    #[test]
    fn rejects_bad_name_characters() {
        let long = "x".repeat(65);
        for name in ["", "has space", "slash/", "ünïcode", long.as_str()] {
            let reason = error_of(
                &format!(
                    "[[tagging.custom]]\nname = \"{name}\"\nkind = \"keywords\"\nwords = [\"a\"]\n"
                ),
                name,
            );
            assert!(reason.contains("name must be"), "{reason}");
        }
        validate(&format!(
            "[[tagging.custom]]\nname = \"{}\"\nkind = \"keywords\"\nwords = [\"a\"]\n",
            "A.b_c-9".repeat(9).chars().take(64).collect::<String>()
        ))
        .unwrap();
    }
}
