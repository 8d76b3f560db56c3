//! Turns a stored conversation and its messages into index documents.

use super::schema::{ANY_DROPOFF, Fields, flow_step};
use crate::store::ConversationRecord;
use crate::store::read::IndexMessage;
use convlog_core::Role;
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use tantivy::TantivyDocument;

/// The fields a conversation's message documents share with it.
pub struct Shared<'a> {
    record: &'a ConversationRecord,
    tags: Vec<&'a str>,
    flagged: &'static str,
    dropoff: Option<(&'a str, String)>,
}

impl<'a> Shared<'a> {
    /// The shared fields of `record`.
    pub fn of(record: &'a ConversationRecord) -> Shared<'a> {
        Shared {
            record,
            tags: record.tags.iter().map(|t| t.tag.as_str()).collect(),
            flagged: if record.flagged_at.is_some() {
                "true"
            } else {
                "false"
            },
            dropoff: record.dropoff.as_ref().map(|(flow, step)| {
                (
                    flow.as_str(),
                    flow_step(flow, step.as_deref().unwrap_or("")),
                )
            }),
        }
    }

    /// A digest of every value a message document copies from its conversation:
    /// equal digests mean the stored message documents need no rewrite.
    pub fn digest(&self) -> u64 {
        // SipHash with fixed keys: the digest only lives in the indexer's memory.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.record.bot_id.hash(&mut hasher);
        self.record.channel.hash(&mut hasher);
        self.tags.hash(&mut hasher);
        self.record.labels.hash(&mut hasher);
        self.flagged.hash(&mut hasher);
        self.dropoff.hash(&mut hasher);
        hasher.finish()
    }

    fn add_to(&self, doc: &mut TantivyDocument, fields: &Fields) {
        let record = self.record;
        doc.add_text(fields.bot, &record.bot_id);
        doc.add_u64(fields.conv_id, record.id);
        doc.add_text(fields.channel, &record.channel);
        for tag in &self.tags {
            doc.add_text(fields.tag, tag);
        }
        for label in &record.labels {
            doc.add_text(fields.label, label);
        }
        doc.add_text(fields.flagged, self.flagged);
        if let Some((flow, step_value)) = &self.dropoff {
            doc.add_text(fields.dropoff, flow);
            doc.add_text(fields.dropoff, ANY_DROPOFF);
            doc.add_text(fields.dropoff_step, step_value);
        }
    }
}

/// The conversation document: facets, activity times and the text of every message.
pub fn conversation(
    fields: &Fields,
    shared: &Shared<'_>,
    messages: &[IndexMessage],
) -> TantivyDocument {
    let record = shared.record;
    let mut conversation = TantivyDocument::default();
    shared.add_to(&mut conversation, fields);
    conversation.add_i64(fields.first_ts, record.started_at);
    conversation.add_i64(fields.last_ts, record.last_message_at);
    let mut flows = BTreeSet::new();
    let mut steps = BTreeSet::new();
    let mut nodes = BTreeSet::new();
    let mut prompts = BTreeSet::new();
    let mut intents = BTreeSet::new();
    let mut times = BTreeSet::new();
    for message in messages {
        times.insert(message.timestamp);
        if let Some(flow) = &message.flow {
            flows.insert(flow.as_str());
            if let Some(step) = &message.step {
                steps.insert(flow_step(flow, step));
            }
        }
        if let Some(node) = &message.node_id {
            nodes.insert(node.as_str());
            if message.node_type.as_deref() == Some("prompt") {
                prompts.insert(node.as_str());
            }
        }
        if let Some(intent) = &message.intent {
            intents.insert(intent.as_str());
        }
        let role = Role::parse(&message.role).unwrap_or(Role::System);
        conversation.add_text(fields.text_of(role), &message.text);
    }
    for flow in flows {
        conversation.add_text(fields.flow, flow);
    }
    for step in &steps {
        conversation.add_text(fields.flow_step, step);
    }
    for node in nodes {
        conversation.add_text(fields.node, node);
    }
    for node in prompts {
        conversation.add_text(fields.prompt_node, node);
    }
    for intent in intents {
        conversation.add_text(fields.get("intent"), intent);
    }
    for ts in times {
        conversation.add_i64(fields.ts, ts);
    }
    conversation
}

/// The document of one message, with the fields it shares with its conversation.
pub fn message(fields: &Fields, shared: &Shared<'_>, message: &IndexMessage) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    shared.add_to(&mut doc, fields);
    doc.add_u64(fields.msg_seq, message.seq);
    doc.add_text(fields.role, &message.role);
    doc.add_i64(fields.ts, message.timestamp);
    if let Some(flow) = &message.flow {
        doc.add_text(fields.flow, flow);
        if let Some(step) = &message.step {
            doc.add_text(fields.flow_step, flow_step(flow, step));
        }
    }
    if let Some(node) = &message.node_id {
        doc.add_text(fields.node, node);
    }
    if let Some(intent) = &message.intent {
        doc.add_text(fields.get("intent"), intent);
    }
    doc.add_text(fields.text, &message.text);
    doc
}
