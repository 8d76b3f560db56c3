//! The registry of built-in tagging rules: everything about each rule in one
//! entry of [`BUILTINS`] — its name (also its tag and its table
//! `[tagging.rules.<name>]`), its parameters with their defaults and checks,
//! whether time alone can change its answer, and its evaluation (a pure core
//! of [`super::rules`]).
//!
//! Reading `config.toml`, validating it, listing the rules and evaluating them
//! all go through this table, and a test holds `config.toml`'s `[tagging]`
//! section to it. A new built-in rule is a core in `rules.rs`, an entry here
//! and its documented table in `config.toml`.

use super::rules::{Conversation, Fired};
use std::sync::LazyLock;

/// A parameter's value; its variant is its type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A whole number, at least 1 (TOML integer).
    Count(usize),
    /// A number from 0 to 1 (TOML float or integer).
    Fraction(f64),
}

impl Value {
    /// Why `self` can't be the value of parameter `name`, if it can't.
    fn check(self, name: &str) -> Result<(), String> {
        match self {
            Value::Count(0) => Err(format!("{name} must be at least 1")),
            Value::Count(_) => Ok(()),
            // Written as a range check so NaN is refused too.
            Value::Fraction(value) if !(0.0..=1.0).contains(&value) => {
                Err(format!("{name} must be between 0 and 1, not {value}"))
            }
            Value::Fraction(_) => Ok(()),
        }
    }
}

/// One parameter of a built-in rule.
#[derive(Debug)]
pub struct Param {
    /// Its key in the rule's table.
    pub name: &'static str,
    /// Its value when the table doesn't set it; its variant is the parameter's type.
    pub default: Value,
}

/// The values of a rule's parameters, in the registry's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Params(Vec<(&'static str, Value)>);

impl Params {
    /// Every parameter of `rule` at its default.
    pub fn defaults(rule: &Builtin) -> Params {
        Params(rule.params.iter().map(|p| (p.name, p.default)).collect())
    }

    /// The value of parameter `name`, if the rule has one.
    pub fn get(&self, name: &str) -> Option<Value> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// Sets parameter `name`; `false` when the rule has no such parameter.
    pub fn set(&mut self, name: &str, value: Value) -> bool {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, slot)) => {
                *slot = value;
                true
            }
            None => false,
        }
    }

    /// The first parameter whose value can't be used, and why.
    pub fn check(&self) -> Result<(), String> {
        self.0
            .iter()
            .try_for_each(|(name, value)| value.check(name))
    }

    /// The count parameter `name`.
    ///
    /// # Panics
    /// When the rule declares no count of that name: a mistake in [`BUILTINS`],
    /// which its tests catch.
    pub fn count(&self, name: &str) -> usize {
        match self.get(name) {
            Some(Value::Count(n)) => n,
            other => panic!("built-in rule parameter {name} is {other:?}, not a count"),
        }
    }

    /// The fraction parameter `name`.
    ///
    /// # Panics
    /// When the rule declares no fraction of that name (see [`Params::count`]).
    pub fn fraction(&self, name: &str) -> f64 {
        match self.get(name) {
            Some(Value::Fraction(value)) => value,
            other => panic!("built-in rule parameter {name} is {other:?}, not a fraction"),
        }
    }
}

/// A built-in rule.
pub struct Builtin {
    /// Its name: the tag it gives and its table `[tagging.rules.<name>]`.
    pub name: &'static str,
    /// Its parameters besides `enabled` and `version`, in documentation order.
    pub params: &'static [Param],
    /// Whether time alone can change its answer, so that conversations are
    /// looked at again when it may (at the end of their session).
    pub time_dependent: bool,
    /// Its evaluation over one conversation, with its parameters.
    pub evaluate: fn(&Conversation<'_>, &Params) -> Option<Fired>,
}

impl std::fmt::Debug for Builtin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Builtin").field(&self.name).finish()
    }
}

/// Rules are equal by name: the name is what the registry keys them by.
impl PartialEq for Builtin {
    fn eq(&self, other: &Builtin) -> bool {
        self.name == other.name
    }
}

/// Every built-in rule, in the order they are configured and evaluated.
pub static BUILTINS: [Builtin; 8] = [
    Builtin {
        name: "unidentified_response",
        params: &[],
        time_dependent: false,
        evaluate: |c, _| c.unidentified_response(),
    },
    Builtin {
        name: "repeated_unidentified",
        params: &[Param {
            name: "n",
            default: Value::Count(2),
        }],
        time_dependent: false,
        evaluate: |c, p| c.repeated_unidentified(p.count("n")),
    },
    Builtin {
        name: "dropoff",
        params: &[],
        time_dependent: false,
        evaluate: |c, _| c.dropoff(),
    },
    Builtin {
        name: "agent_handoff",
        params: &[],
        time_dependent: false,
        evaluate: |c, _| c.agent_handoff(),
    },
    Builtin {
        name: "low_confidence",
        params: &[Param {
            name: "threshold",
            default: Value::Fraction(0.5),
        }],
        time_dependent: false,
        evaluate: |c, p| c.low_confidence(p.fraction("threshold")),
    },
    Builtin {
        name: "user_repeated",
        params: &[Param {
            name: "n",
            default: Value::Count(2),
        }],
        time_dependent: false,
        evaluate: |c, p| c.user_repeated(p.count("n")),
    },
    Builtin {
        name: "no_bot_reply",
        params: &[],
        // The session ending is what makes it fire.
        time_dependent: true,
        evaluate: |c, _| c.no_bot_reply(),
    },
    Builtin {
        name: "long_conversation",
        params: &[Param {
            name: "max_messages",
            default: Value::Count(50),
        }],
        time_dependent: false,
        evaluate: |c, p| c.long_conversation(p.count("max_messages")),
    },
];

/// The names of [`BUILTINS`], in order.
pub static NAMES: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| BUILTINS.iter().map(|rule| rule.name).collect());

/// The keys of each rule's table, by position in [`BUILTINS`]: `enabled`,
/// `version`, then its parameters.
static KEYS: LazyLock<Vec<Vec<&'static str>>> = LazyLock::new(|| {
    BUILTINS
        .iter()
        .map(|rule| {
            ["enabled", "version"]
                .into_iter()
                .chain(rule.params.iter().map(|p| p.name))
                .collect()
        })
        .collect()
});

/// The built-in rule called `name`.
pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|rule| rule.name == name)
}

impl Builtin {
    /// The keys its table may have: `enabled`, `version` and its parameters.
    pub fn keys(&'static self) -> &'static [&'static str] {
        let at = BUILTINS
            .iter()
            .position(|rule| std::ptr::eq(rule, self))
            .expect("a built-in rule is in the registry");
        &KEYS[at]
    }

    /// The parameter called `name`.
    pub fn param(&self, name: &str) -> Option<&'static Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MessageRecord;
    use crate::tag::rules::ConversationFacts;

    #[test]
    fn names_are_unique_and_each_rule_evaluates_with_its_defaults() {
        let mut names = NAMES.clone();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), BUILTINS.len());
        let message = MessageRecord {
            seq: 0,
            id: "m0".into(),
            conversation_id: 1,
            role: "user".into(),
            text: "hello".into(),
            timestamp: 0,
            flow: Some("f".into()),
            step: None,
            node_id: None,
            node_type: None,
            node_name: None,
            intent: None,
            confidence: Some(0.1),
            unidentified: true,
            flow_completed: false,
            metadata: None,
            lang: None,
        };
        let agent = MessageRecord {
            role: "agent".into(),
            unidentified: false,
            flow: None,
            confidence: None,
            ..message.clone()
        };
        let messages = vec![agent, message.clone(), message];
        let facts = ConversationFacts {
            now: i64::MAX,
            session_timeout: 1,
        };
        let conversation = Conversation::new(&messages, facts);
        // Reading a parameter the entry doesn't declare would panic here.
        for rule in &BUILTINS {
            let params = Params::defaults(rule);
            params.check().unwrap();
            let fired = (rule.evaluate)(&conversation, &params);
            let expected = rule.name != "long_conversation";
            assert_eq!(fired.is_some(), expected, "{}", rule.name);
        }
    }

    #[test]
    fn parameters_are_checked_by_type() {
        assert_eq!(
            Value::Count(0).check("n"),
            Err("n must be at least 1".into())
        );
        assert!(Value::Count(1).check("n").is_ok());
        for bad in [-0.1, 1.01, f64::NAN, f64::INFINITY] {
            let reason = Value::Fraction(bad).check("threshold").unwrap_err();
            assert!(reason.contains("between 0 and 1"), "{reason}");
        }
        assert!(Value::Fraction(0.0).check("threshold").is_ok());
        assert!(Value::Fraction(1.0).check("threshold").is_ok());
    }

    #[test]
    fn keys_are_the_common_ones_then_the_parameters() {
        assert_eq!(
            find("low_confidence").unwrap().keys(),
            ["enabled", "version", "threshold"]
        );
        assert_eq!(find("dropoff").unwrap().keys(), ["enabled", "version"]);
    }
}
