//! Evaluation: every configured rule over one conversation, giving the tags it
//! earns. Built-in rules run through their registry entry, custom rules
//! through the keywords and threshold cores.

use super::config::{Rule, RuleKind};
use super::rules::{Conversation, ConversationFacts, Fired, KeywordHits, KeywordRule};
use crate::store::MessageRecord;

/// A tag a rule gives a conversation, with its explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct TagResult {
    /// The tag: the rule's name.
    pub tag: String,
    /// The rule that gave it.
    pub rule: String,
    /// That rule's version.
    pub rule_version: u32,
    /// The messages that triggered it, in conversation order.
    pub message_ids: Vec<String>,
    /// Why, in words, e.g. "3 unidentified responses in a row".
    pub reason: String,
}

/// The keywords rule `rule` is, if it is one.
fn keyword_rule(rule: &Rule) -> Option<KeywordRule<'_>> {
    match &rule.kind {
        RuleKind::Keywords { role, phrases, .. } => Some((role.as_deref(), phrases.as_slice())),
        _ => None,
    }
}

/// Evaluates every rule over one conversation's messages (in order); returns the tags it earns, sorted by tag.
pub fn evaluate(
    rules: &[Rule],
    messages: &[MessageRecord],
    facts: ConversationFacts,
) -> Vec<TagResult> {
    if messages.is_empty() || rules.is_empty() {
        return Vec::new();
    }
    let conversation = Conversation::new(messages, facts);
    let keyword_hits = KeywordHits::new(rules.iter().map(keyword_rule), messages);

    let mut tags = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        let fired = match &rule.kind {
            RuleKind::Builtin { rule, params } => (rule.evaluate)(&conversation, params),
            RuleKind::Keywords {
                role,
                phrases,
                min_matches,
            } => keyword_hits.fired(index, messages, role.as_deref(), phrases, *min_matches),
            RuleKind::Threshold { metric, op, value } => {
                conversation.threshold(*metric, *op, *value)
            }
        };
        if let Some(Fired {
            message_ids,
            reason,
        }) = fired
        {
            tags.push(TagResult {
                tag: rule.name.clone(),
                rule: rule.name.clone(),
                rule_version: rule.version,
                message_ids,
                reason,
            });
        }
    }
    tags.sort_by(|a, b| a.tag.cmp(&b.tag));
    tags
}
