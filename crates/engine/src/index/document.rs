//! Turns a stored conversation and its messages into index documents.

use super::schema::{ANY_DROPOFF, Fields, TextAnalysis, flow_step};
use crate::store::ConversationRecord;
use crate::store::read::MessageRecord;
use convlog_querylang::analysis;
use std::collections::BTreeSet;
use tantivy::TantivyDocument;

/// A conversation's fields as its documents carry them.
pub struct Shared<'a> {
    record: &'a ConversationRecord,
    flagged: &'static str,
    dropoff: Option<(&'a str, String)>,
}

impl<'a> Shared<'a> {
    /// The fields of `record`.
    pub fn of(record: &'a ConversationRecord) -> Shared<'a> {
        Shared {
            record,
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

    /// What every document of the conversation carries: what never changes.
    fn add_fixed(&self, doc: &mut TantivyDocument, fields: &Fields) {
        let record = self.record;
        doc.add_text(fields.bot, &record.bot_id);
        doc.add_u64(fields.conv_id, record.id);
        doc.add_text(fields.channel, &record.channel);
    }

    /// What only the conversation document carries: what review and tagging
    /// change, so a change rewrites one document, not every message.
    fn add_changing(&self, doc: &mut TantivyDocument, fields: &Fields) {
        let record = self.record;
        for tag in &record.tags {
            doc.add_text(fields.tag, &tag.tag);
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

/// The conversation document: facets and activity times. No text: conversation
/// search finds words through the message documents (`query::join`).
pub fn conversation(
    fields: &Fields,
    shared: &Shared<'_>,
    messages: &[MessageRecord],
) -> TantivyDocument {
    let record = shared.record;
    let mut conversation = TantivyDocument::default();
    shared.add_fixed(&mut conversation, fields);
    shared.add_changing(&mut conversation, fields);
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

/// The document of one message, with the fixed fields of its conversation.
/// `lang` is the language its text is analysed in (see `convlog_querylang::analysis`),
/// unless the index is of schema 5, which has no languages.
pub fn message(
    fields: &Fields,
    shared: &Shared<'_>,
    message: &MessageRecord,
    analysis: &TextAnalysis,
    lang: &str,
) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    shared.add_fixed(&mut doc, fields);
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
    match analysis {
        TextAnalysis::Languages(language) => {
            for word in analysis::folded_words(&message.text) {
                doc.add_text(language.words, word);
            }
            doc.add_text(fields.text, analysis::tagged(lang, &message.text));
            doc.add_text(language.lang, lang);
        }
        // A schema 5 index, served while a reindex replaces it: plain words.
        TextAnalysis::PlainWords { .. } => doc.add_text(fields.text, &message.text),
    }
    doc
}
