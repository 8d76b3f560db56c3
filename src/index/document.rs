//! Turns a stored conversation and its messages into index documents.

use super::schema::{ANY_DROPOFF, Fields, flow_step};
use crate::model::Role;
use crate::store::{ConversationRecord, MessageRecord};
use std::collections::BTreeSet;
use tantivy::TantivyDocument;

/// The fields a conversation's message documents share with it.
struct Shared<'a> {
    tags: Vec<&'a str>,
    labels: &'a [String],
    flagged: &'static str,
    dropoff: Option<(&'a str, String)>,
}

fn add_shared(
    doc: &mut TantivyDocument,
    fields: &Fields,
    record: &ConversationRecord,
    shared: &Shared<'_>,
) {
    doc.add_text(fields.bot, &record.bot_id);
    doc.add_u64(fields.conv_id, record.id);
    doc.add_text(fields.channel, &record.channel);
    for tag in &shared.tags {
        doc.add_text(fields.tag, tag);
    }
    for label in shared.labels {
        doc.add_text(fields.label, label);
    }
    doc.add_text(fields.flagged, shared.flagged);
    if let Some((flow, step_value)) = &shared.dropoff {
        doc.add_text(fields.dropoff, flow);
        doc.add_text(fields.dropoff, ANY_DROPOFF);
        doc.add_text(fields.dropoff_step, step_value);
    }
}

/// The conversation document and one document per message.
pub fn documents(
    fields: &Fields,
    record: &ConversationRecord,
    messages: &[MessageRecord],
) -> (TantivyDocument, Vec<TantivyDocument>) {
    let shared = Shared {
        tags: record.tags.iter().map(|t| t.tag.as_str()).collect(),
        labels: &record.labels,
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
    };
    let mut docs = Vec::with_capacity(messages.len());

    let mut conversation = TantivyDocument::default();
    add_shared(&mut conversation, fields, record, &shared);
    conversation.add_i64(fields.first_ts, record.started_at);
    conversation.add_i64(fields.last_ts, record.last_message_at);
    let mut flows = BTreeSet::new();
    let mut steps = BTreeSet::new();
    let mut nodes = BTreeSet::new();
    let mut prompts = BTreeSet::new();
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
    for ts in times {
        conversation.add_i64(fields.ts, ts);
    }

    for message in messages {
        let mut doc = TantivyDocument::default();
        add_shared(&mut doc, fields, record, &shared);
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
        doc.add_text(fields.text, &message.text);
        docs.push(doc);
    }
    (conversation, docs)
}
