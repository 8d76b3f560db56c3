//! The `[tagging]` section of `config.toml`: the raw TOML shapes and their
//! validation into the [`Rule`]s that [`super::evaluate()`] runs.
//!
//! Raw and validated are two types so that everything the engine sees has been
//! checked once, at start-up, and every error names the rule at fault. Disabled
//! rules are validated too: switching one on later must not be what breaks a
//! deployment.
//!
//! The built-in rules' tables, keys, defaults and checks all come from the
//! registry ([`super::builtin::BUILTINS`]); nothing here names a built-in rule.

use super::builtin::{self, BUILTINS, Builtin, Params, Value};
use super::rules::{Metric, Op, tokenize};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use std::collections::BTreeSet;

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

/// `[tagging.rules]`: one table per built-in rule, each optional, in the
/// registry's order; what a table leaves out is the registry's default.
///
/// A table for a rule the registry doesn't have, or a key its rule doesn't
/// take, is a TOML error naming what is expected.
#[derive(Debug, Clone, PartialEq)]
pub struct RawBuiltins(pub Vec<RawBuiltin>);

/// `[tagging.rules.<name>]` as written, defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct RawBuiltin {
    /// The rule.
    pub rule: &'static Builtin,
    /// Whether the rule runs (default true).
    pub enabled: bool,
    /// Version stored with its tags (default 1); raising it re-tags every conversation.
    pub version: u32,
    /// Its parameters, unchecked.
    pub params: Params,
}

impl RawBuiltin {
    /// The rule as it is when its table is absent.
    fn defaults(rule: &'static Builtin) -> RawBuiltin {
        RawBuiltin {
            rule,
            enabled: true,
            version: 1,
            params: Params::defaults(rule),
        }
    }
}

impl Default for RawBuiltins {
    fn default() -> RawBuiltins {
        RawBuiltins(BUILTINS.iter().map(RawBuiltin::defaults).collect())
    }
}

impl<'de> Deserialize<'de> for RawBuiltins {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawBuiltins, D::Error> {
        struct Tables;

        impl<'de> Visitor<'de> for Tables {
            type Value = RawBuiltins;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a table per built-in rule")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawBuiltins, A::Error> {
                let mut builtins = RawBuiltins::default();
                while let Some(name) = map.next_key::<String>()? {
                    let Some(raw) = builtins.0.iter_mut().find(|raw| raw.rule.name == name) else {
                        return Err(de::Error::unknown_field(&name, &builtin::NAMES));
                    };
                    map.next_value_seed(Table(raw))?;
                }
                Ok(builtins)
            }
        }

        deserializer.deserialize_map(Tables)
    }
}

/// Reads one rule's table over its defaults.
struct Table<'a>(&'a mut RawBuiltin);

impl<'de> DeserializeSeed<'de> for Table<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Table<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the table of rule {}", self.0.rule.name)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let raw = self.0;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "enabled" => raw.enabled = map.next_value()?,
                "version" => raw.version = map.next_value()?,
                name => {
                    let Some(param) = raw.rule.param(name) else {
                        return Err(de::Error::unknown_field(name, raw.rule.keys()));
                    };
                    let value = match param.default {
                        Value::Count(_) => Value::Count(map.next_value()?),
                        Value::Fraction(_) => Value::Fraction(map.next_value()?),
                    };
                    raw.params.set(name, value);
                }
            }
        }
        Ok(())
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
    /// The enabled rules: built-ins in registry order, then custom rules as written.
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
    /// A built-in rule of the registry.
    Builtin {
        /// Its registry entry.
        rule: &'static Builtin,
        /// Its checked parameters.
        params: Params,
    },
    /// At least `min_matches` messages (of `role`, if given) contain one of `phrases`.
    Keywords {
        /// `user`, `bot`, `agent` or `system`; `None` for any role.
        role: Option<String>,
        /// Each phrase as its word tokens (see [`tokenize`]); none is empty.
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

impl RuleKind {
    /// The built-in rule `name` with `params` set and the rest at their
    /// defaults, checked as `config.toml`'s are.
    pub fn builtin(name: &str, params: &[(&str, Value)]) -> Result<RuleKind, RuleError> {
        let rule = builtin::find(name).ok_or_else(|| rule_error(name, "no such built-in rule"))?;
        let mut values = Params::defaults(rule);
        for (param, value) in params {
            if !values.set(param, *value) {
                return Err(rule_error(name, format!("has no parameter `{param}`")));
            }
        }
        values.check().map_err(|reason| rule_error(name, reason))?;
        Ok(RuleKind::Builtin {
            rule,
            params: values,
        })
    }

    /// Whether time alone can change what the rule finds.
    pub fn is_time_dependent(&self) -> bool {
        matches!(self, RuleKind::Builtin { rule, .. } if rule.time_dependent)
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
        let mut rules = Vec::new();
        for raw in &self.rules.0 {
            let name = raw.rule.name;
            check_version(name, raw.version)?;
            raw.params
                .check()
                .map_err(|reason| rule_error(name, reason))?;
            if raw.enabled {
                rules.push(Rule {
                    name: name.to_string(),
                    version: raw.version,
                    kind: RuleKind::Builtin {
                        rule: raw.rule,
                        params: raw.params.clone(),
                    },
                });
            }
        }

        let mut names = BTreeSet::new();
        for custom in &self.custom {
            let rule = custom.validate()?;
            if builtin::find(&rule.name).is_some() {
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
            let phrase = tokenize(word);
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
    use crate::tag::builtin::NAMES;
    use crate::tag::rules::{Metric, Op};

    #[derive(Debug, Deserialize)]
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

    /// The built-in rule `name` with `params` (the rest at their defaults).
    fn builtin(name: &str, params: &[(&str, Value)]) -> RuleKind {
        RuleKind::builtin(name, params).unwrap()
    }

    /// The documented defaults, written out.
    fn default_rules() -> Vec<Rule> {
        let rule = |name: &str, params: &[(&str, Value)]| Rule {
            name: name.to_string(),
            version: 1,
            kind: builtin(name, params),
        };
        let (count, fraction) = (Value::Count, Value::Fraction);
        vec![
            rule("unidentified_response", &[]),
            rule("repeated_unidentified", &[("n", count(2))]),
            rule("dropoff", &[]),
            rule("agent_handoff", &[]),
            rule("low_confidence", &[("threshold", fraction(0.5))]),
            rule("user_repeated", &[("n", count(2))]),
            rule("no_bot_reply", &[]),
            rule("long_conversation", &[("max_messages", count(50))]),
        ]
    }

    #[test]
    fn config_toml_and_the_registry_have_the_same_rules_parameters_and_defaults() {
        let table: toml::Table = project_tagging().parse().unwrap();
        let documented = table["tagging"]["rules"].as_table().unwrap();
        let documented_names: Vec<&str> = documented.keys().map(String::as_str).collect();
        let mut registered: Vec<&str> = NAMES.clone();
        registered.sort_unstable();
        assert_eq!(documented_names, registered, "config.toml vs the registry");
        for rule in &BUILTINS {
            let table = documented[rule.name].as_table().unwrap();
            let keys: BTreeSet<&str> = table.keys().map(String::as_str).collect();
            let expected: BTreeSet<&str> = rule.keys().iter().copied().collect();
            assert_eq!(keys, expected, "[tagging.rules.{}]", rule.name);
            assert_eq!(table["enabled"].as_bool(), Some(true), "{}", rule.name);
            assert_eq!(table["version"].as_integer(), Some(1), "{}", rule.name);
            for param in rule.params {
                let written = &table[param.name];
                let same = match param.default {
                    Value::Count(n) => written.as_integer() == Some(n as i64),
                    Value::Fraction(x) => written.as_float() == Some(x),
                };
                assert!(
                    same,
                    "{}.{}: config.toml says {written}, the registry {:?}",
                    rule.name, param.name, param.default
                );
            }
        }
    }

    #[test]
    fn config_toml_gives_the_eight_builtins_with_their_defaults() {
        let config = validate(&project_tagging()).unwrap();
        assert_eq!(config.threads, 0);
        assert_eq!(config.batch_size, 512);
        assert_eq!(config.rules, default_rules());
    }

    #[test]
    fn config_toml_spells_out_the_section_settings() {
        // The serde defaults would hide a key left out of the documented file, so
        // look at the TOML itself (the rules' keys: the registry test above).
        let table: toml::Table = project_tagging().parse().unwrap();
        let tagging = table["tagging"].as_table().unwrap();
        assert_eq!(tagging["threads"].as_integer(), Some(0));
        assert_eq!(tagging["batch_size"].as_integer(), Some(512));
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
            builtin("low_confidence", &[("threshold", Value::Fraction(0.3))])
        );
        assert_eq!(
            find("user_repeated").kind,
            builtin("user_repeated", &[("n", Value::Count(3))])
        );
        assert_eq!(
            find("long_conversation").kind,
            builtin("long_conversation", &[("max_messages", Value::Count(100))])
        );
        assert_eq!(
            find("repeated_unidentified").kind,
            builtin("repeated_unidentified", &[("n", Value::Count(2))])
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
            kind: builtin("low_confidence", &[("threshold", Value::Fraction(1.0))]),
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
        // The message says what the rule's table takes, from the registry.
        let err = toml::from_str::<Document>("[tagging.rules.low_confidence]\nn = 2\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown field `n`, expected one of `enabled`, `version`, `threshold`"),
            "{err}"
        );
        let err = toml::from_str::<Document>("[tagging.rules.dropof]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`dropof`, expected one of `unidentified_response`"),
            "{err}"
        );
        // A parameter of the wrong type is refused as serde refuses it.
        let err = toml::from_str::<Document>("[tagging.rules.user_repeated]\nn = 1.5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid type: floating point"), "{err}");
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
        for name in NAMES.iter().copied() {
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
        for name in NAMES.iter().copied() {
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
