//! The JSON shapes of the contract, built from store records.

use convlog_core::{ConversationId, format_timestamp};
use convlog_engine::ingest::pseudonym::pseudonym;
use convlog_engine::store::{ConversationRecord, MessageRecord, TagRecord};
use serde::Serialize;
use serde_json::value::RawValue;

/// Where a conversation is dropped off.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Dropoff)]
pub struct DropoffView<'a> {
    pub flow: &'a str,
    pub step: Option<&'a str>,
}

/// The conversation object.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Conversation)]
pub struct ConversationView<'a> {
    pub id: String,
    pub bot_id: &'a str,
    pub user: String,
    pub channel: &'a str,
    pub started_at: String,
    pub last_message_at: String,
    pub message_count: u64,
    pub tags: Vec<&'a str>,
    pub labels: &'a [String],
    pub flagged: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flagged_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag_note: Option<&'a str>,
    pub flows: &'a [String],
    pub dropoff: Option<DropoffView<'a>>,
    pub debug: bool,
    pub url: String,
}

impl<'a> ConversationView<'a> {
    /// The view of a stored conversation.
    pub fn new(record: &'a ConversationRecord) -> ConversationView<'a> {
        let id = ConversationId(record.id).to_string();
        ConversationView {
            url: format!("/bots/{}/conversations/{id}", record.bot_id),
            id,
            bot_id: &record.bot_id,
            user: pseudonym(&record.user_key),
            channel: &record.channel,
            started_at: format_timestamp(record.started_at),
            last_message_at: format_timestamp(record.last_message_at),
            message_count: record.message_count,
            tags: record.tags.iter().map(|t| t.tag.as_str()).collect(),
            labels: &record.labels,
            flagged: record.flagged_at.is_some(),
            flagged_at: record.flagged_at.map(format_timestamp),
            flag_note: record.flag_note.as_deref(),
            flows: &record.flows,
            dropoff: record.dropoff.as_ref().map(|(flow, step)| DropoffView {
                flow,
                step: step.as_deref(),
            }),
            debug: record.debug,
        }
    }
}

/// A message as shown to clients.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Message)]
pub struct MessageView<'a> {
    pub id: &'a str,
    pub role: &'a str,
    pub text: &'a str,
    pub timestamp: String,
    pub flow: Option<&'a str>,
    pub step: Option<&'a str>,
    pub node_id: Option<&'a str>,
    pub node_type: Option<&'a str>,
    pub node_name: Option<&'a str>,
    pub intent: Option<&'a str>,
    pub confidence: Option<f64>,
    pub unidentified: bool,
    pub flow_completed: bool,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub highlight: Option<&'a str>,
}

impl<'a> MessageView<'a> {
    /// The view of a stored message, with its highlighted text when it matched `q`.
    pub fn new(record: &'a MessageRecord, highlight: Option<&'a str>) -> MessageView<'a> {
        MessageView {
            id: &record.id,
            role: &record.role,
            text: &record.text,
            timestamp: format_timestamp(record.timestamp),
            flow: record.flow.as_deref(),
            step: record.step.as_deref(),
            node_id: record.node_id.as_deref(),
            node_type: record.node_type.as_deref(),
            node_name: record.node_name.as_deref(),
            intent: record.intent.as_deref(),
            confidence: record.confidence,
            unidentified: record.unidentified,
            flow_completed: record.flow_completed,
            metadata: record
                .metadata
                .as_deref()
                .and_then(|json| serde_json::from_str(json).ok()),
            highlight,
        }
    }
}

/// A tag with its explanation.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TagDetail)]
pub struct TagDetailView<'a> {
    pub tag: &'a str,
    pub rule: &'a str,
    pub rule_version: u32,
    pub message_ids: &'a [String],
    pub reason: &'a str,
}

impl<'a> TagDetailView<'a> {
    /// The view of a stored tag.
    pub fn new(tag: &'a TagRecord) -> TagDetailView<'a> {
        TagDetailView {
            tag: &tag.tag,
            rule: &tag.rule,
            rule_version: tag.rule_version,
            message_ids: &tag.message_ids,
            reason: &tag.reason,
        }
    }
}

/// A conversation as a share link shows it (see [`convlog_engine::review::SharedConversation`]).
pub fn shared_view(shared: &convlog_engine::review::SharedConversation) -> serde_json::Value {
    use serde_json::json;
    let reveal = shared.reveal;
    let record = &shared.record;
    let messages: Vec<serde_json::Value> = shared
        .messages
        .iter()
        .map(|m| {
            let mut view = MessageView::new(m, None);
            if !reveal.metadata {
                view.metadata = None;
            }
            serde_json::to_value(view).expect("view serialises")
        })
        .collect();
    let tag_details: Vec<serde_json::Value> = record
        .tags
        .iter()
        .map(|tag| match reveal.tag_details {
            true => serde_json::to_value(TagDetailView::new(tag)).expect("view serialises"),
            false => json!({"tag": tag.tag, "reason": tag.reason}),
        })
        .collect();
    let view = ConversationView::new(record);
    let mut body = json!({
        "id": view.id,
        "bot_id": view.bot_id,
        "user": view.user,
        "channel": view.channel,
        "started_at": view.started_at,
        "last_message_at": view.last_message_at,
        "message_count": view.message_count,
        "tags": view.tags,
        "flows": view.flows,
        "dropoff": view.dropoff,
        "messages": messages,
        "tag_details": tag_details,
        "revealed": reveal.names(),
    });
    if reveal.labels {
        body["labels"] = json!(view.labels);
    }
    if reveal.flag {
        body["flagged"] = json!(view.flagged);
        body["flagged_at"] = json!(view.flagged_at);
        body["flag_note"] = json!(view.flag_note);
    }
    body
}

/// A message with where it belongs: the live tail's events and the export's lines.
#[derive(Serialize)]
pub struct PlacedMessageView<'a> {
    #[serde(flatten)]
    pub message: MessageView<'a>,
    pub conversation_id: String,
    pub channel: &'a str,
    pub bot_id: &'a str,
}
