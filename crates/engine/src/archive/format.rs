//! The archive's Parquet format (the contract is `archive/README.md`): arrow
//! schemas of the messages and conversations tables, rows built from the store's
//! records, deterministic encoding, and decoding for restores.
//!
//! Encoding is deterministic: the same rows give the same bytes, so a run that
//! is redone after a crash produces objects with the same checksum.

use crate::ingest::pseudonym::pseudonym;
use crate::store::{ConversationRecord, MessageRecord, TagRecord};
use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use convlog_core::{ConversationId, Micros, UserKey};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::sync::{Arc, LazyLock};

/// Version of the archive's schema, written into every file's key-value metadata.
pub const SCHEMA_VERSION: u32 = 1;

/// Rows per row group: large enough for good compression and few footers,
/// small enough that an engine can skip by statistics.
const ROW_GROUP_ROWS: usize = 122_880;

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn strings() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

/// The messages table (one row per message; `bot_id` and `date` live in the path).
pub static MESSAGES: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("conversation_id", DataType::Utf8, false),
        Field::new("position", DataType::Int32, false),
        Field::new("message_id", DataType::Utf8, false),
        Field::new("ts", timestamp(), false),
        Field::new("user_key", DataType::Utf8, false),
        Field::new("pseudonym", DataType::Utf8, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("session_id", DataType::Utf8, true),
        Field::new("role", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, false),
        Field::new("flow", DataType::Utf8, true),
        Field::new("step", DataType::Utf8, true),
        Field::new("node_id", DataType::Utf8, true),
        Field::new("node_type", DataType::Utf8, true),
        Field::new("node_name", DataType::Utf8, true),
        Field::new("intent", DataType::Utf8, true),
        Field::new("confidence", DataType::Float64, true),
        Field::new("unidentified", DataType::Boolean, false),
        Field::new("flow_completed", DataType::Boolean, false),
        Field::new("metadata", DataType::Utf8, true),
        Field::new("tags", strings(), false),
        Field::new("labels", strings(), false),
        Field::new("flagged", DataType::Boolean, false),
        Field::new("archived_at", timestamp(), false),
    ]))
});

/// The conversations table (one row per conversation; partitioned by the date it started).
pub static CONVERSATIONS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("conversation_id", DataType::Utf8, false),
        Field::new("user_key", DataType::Utf8, false),
        Field::new("pseudonym", DataType::Utf8, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("session_id", DataType::Utf8, true),
        Field::new("started_at", timestamp(), false),
        Field::new("last_message_at", timestamp(), false),
        Field::new("message_count", DataType::Int64, false),
        Field::new("flows", strings(), false),
        Field::new("dropoff_flow", DataType::Utf8, true),
        Field::new("dropoff_step", DataType::Utf8, true),
        Field::new("flagged", DataType::Boolean, false),
        Field::new("flagged_at", timestamp(), true),
        Field::new("flag_note", DataType::Utf8, true),
        Field::new("labels", strings(), false),
        Field::new("tags", strings(), false),
        Field::new("tag_details", DataType::Utf8, false),
        Field::new("archived_at", timestamp(), false),
    ]))
});

fn list_of(values: &[Vec<String>]) -> ArrayRef {
    let mut builder = ListBuilder::new(StringBuilder::new());
    for items in values {
        for item in items {
            builder.values().append_value(item);
        }
        builder.append(true);
    }
    Arc::new(builder.finish())
}

fn utc(builder: TimestampMicrosecondBuilder) -> TimestampMicrosecondBuilder {
    builder.with_timezone("UTC")
}

fn tag_names(tags: &[TagRecord]) -> Vec<String> {
    tags.iter().map(|t| t.tag.clone()).collect()
}

/// The messages rows of some conversations: `(conversation, messages)` pairs,
/// rows in the order given (callers sort by conversation, then time).
pub fn messages_batch(
    rows: &[(&ConversationRecord, Vec<&MessageRecord>)],
    archived_at: Micros,
) -> RecordBatch {
    let count: usize = rows.iter().map(|(_, m)| m.len()).sum();
    let mut conversation_id = StringBuilder::new();
    let mut position = Int32Builder::with_capacity(count);
    let mut message_id = StringBuilder::new();
    let mut ts = utc(TimestampMicrosecondBuilder::with_capacity(count));
    let mut user_key = StringBuilder::new();
    let mut name = StringBuilder::new();
    let mut channel = StringBuilder::new();
    let mut session_id = StringBuilder::new();
    let mut role = StringBuilder::new();
    let mut text = StringBuilder::new();
    let mut optional: [StringBuilder; 6] = Default::default();
    let mut confidence = Float64Builder::with_capacity(count);
    let mut unidentified = BooleanBuilder::with_capacity(count);
    let mut flow_completed = BooleanBuilder::with_capacity(count);
    let mut metadata = StringBuilder::new();
    let mut tags = ListBuilder::new(StringBuilder::new());
    let mut labels = ListBuilder::new(StringBuilder::new());
    let mut flagged = BooleanBuilder::with_capacity(count);
    let mut archived = utc(TimestampMicrosecondBuilder::with_capacity(count));
    for (conversation, messages) in rows {
        let id = ConversationId(conversation.id).to_string();
        let pseudonym = pseudonym(&conversation.user_key);
        for (i, m) in messages.iter().enumerate() {
            conversation_id.append_value(&id);
            position.append_value(i as i32);
            message_id.append_value(&m.id);
            ts.append_value(m.timestamp);
            user_key.append_value(&conversation.user_key.0);
            name.append_value(&pseudonym);
            channel.append_value(&conversation.channel);
            session_id.append_option(conversation.session_id.as_deref());
            role.append_value(&m.role);
            text.append_value(&m.text);
            for (builder, value) in optional.iter_mut().zip([
                &m.flow,
                &m.step,
                &m.node_id,
                &m.node_type,
                &m.node_name,
                &m.intent,
            ]) {
                builder.append_option(value.as_deref());
            }
            confidence.append_option(m.confidence);
            unidentified.append_value(m.unidentified);
            flow_completed.append_value(m.flow_completed);
            metadata.append_option(m.metadata.as_deref());
            for tag in &conversation.tags {
                tags.values().append_value(&tag.tag);
            }
            tags.append(true);
            for label in &conversation.labels {
                labels.values().append_value(label);
            }
            labels.append(true);
            flagged.append_value(conversation.flagged_at.is_some());
            archived.append_value(archived_at);
        }
    }
    let [flow, step, node_id, node_type, node_name, intent] = optional;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(conversation_id.finish()),
        Arc::new(position.finish()),
        Arc::new(message_id.finish()),
        Arc::new(ts.finish()),
        Arc::new(user_key.finish()),
        Arc::new(name.finish()),
        Arc::new(channel.finish()),
        Arc::new(session_id.finish()),
        Arc::new(role.finish()),
        Arc::new(text.finish()),
        Arc::new({ flow }.finish()),
        Arc::new({ step }.finish()),
        Arc::new({ node_id }.finish()),
        Arc::new({ node_type }.finish()),
        Arc::new({ node_name }.finish()),
        Arc::new({ intent }.finish()),
        Arc::new(confidence.finish()),
        Arc::new(unidentified.finish()),
        Arc::new(flow_completed.finish()),
        Arc::new(metadata.finish()),
        Arc::new(tags.finish()),
        Arc::new(labels.finish()),
        Arc::new(flagged.finish()),
        Arc::new(archived.finish()),
    ];
    RecordBatch::try_new(MESSAGES.clone(), columns).expect("columns match the messages schema")
}

/// One row per conversation, in the order given.
pub fn conversations_batch(rows: &[&ConversationRecord], archived_at: Micros) -> RecordBatch {
    let mut conversation_id = StringBuilder::new();
    let mut user_key = StringBuilder::new();
    let mut name = StringBuilder::new();
    let mut channel = StringBuilder::new();
    let mut session_id = StringBuilder::new();
    let mut started = utc(TimestampMicrosecondBuilder::new());
    let mut last = utc(TimestampMicrosecondBuilder::new());
    let mut count = Int64Builder::new();
    let mut flows = Vec::new();
    let mut dropoff_flow = StringBuilder::new();
    let mut dropoff_step = StringBuilder::new();
    let mut flagged = BooleanBuilder::new();
    let mut flagged_at = utc(TimestampMicrosecondBuilder::new());
    let mut flag_note = StringBuilder::new();
    let mut labels = Vec::new();
    let mut tags = Vec::new();
    let mut tag_details = StringBuilder::new();
    let mut archived = utc(TimestampMicrosecondBuilder::new());
    for c in rows {
        conversation_id.append_value(ConversationId(c.id).to_string());
        user_key.append_value(&c.user_key.0);
        name.append_value(pseudonym(&c.user_key));
        channel.append_value(&c.channel);
        session_id.append_option(c.session_id.as_deref());
        started.append_value(c.started_at);
        last.append_value(c.last_message_at);
        count.append_value(c.message_count as i64);
        flows.push(c.flows.clone());
        dropoff_flow.append_option(c.dropoff.as_ref().map(|(flow, _)| flow.as_str()));
        dropoff_step.append_option(c.dropoff.as_ref().and_then(|(_, step)| step.as_deref()));
        flagged.append_value(c.flagged_at.is_some());
        flagged_at.append_option(c.flagged_at);
        flag_note.append_option(c.flag_note.as_deref());
        labels.push(c.labels.clone());
        tags.push(tag_names(&c.tags));
        tag_details.append_value(tag_details_json(&c.tags));
        archived.append_value(archived_at);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(conversation_id.finish()),
        Arc::new(user_key.finish()),
        Arc::new(name.finish()),
        Arc::new(channel.finish()),
        Arc::new(session_id.finish()),
        Arc::new(started.finish()),
        Arc::new(last.finish()),
        Arc::new(count.finish()),
        list_of(&flows),
        Arc::new(dropoff_flow.finish()),
        Arc::new(dropoff_step.finish()),
        Arc::new(flagged.finish()),
        Arc::new(flagged_at.finish()),
        Arc::new(flag_note.finish()),
        list_of(&labels),
        list_of(&tags),
        Arc::new(tag_details.finish()),
        Arc::new(archived.finish()),
    ];
    RecordBatch::try_new(CONVERSATIONS.clone(), columns)
        .expect("columns match the conversations schema")
}

fn tag_details_json(tags: &[TagRecord]) -> String {
    let details: Vec<serde_json::Value> = tags
        .iter()
        .map(|t| {
            serde_json::json!({
                "tag": t.tag,
                "rule": t.rule,
                "rule_version": t.rule_version,
                "message_ids": t.message_ids,
                "reason": t.reason,
            })
        })
        .collect();
    serde_json::to_string(&details).expect("json values serialise")
}

/// Encodes a batch as one zstd Parquet file; the same batch gives the same bytes.
pub fn encode(batch: &RecordBatch, table: &str, run_id: u64) -> Result<Vec<u8>, String> {
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(
                "convlog.schema_version".to_string(),
                SCHEMA_VERSION.to_string(),
            ),
            KeyValue::new("convlog.table".to_string(), table.to_string()),
            KeyValue::new("convlog.run".to_string(), run_id.to_string()),
        ]))
        .build();
    // Without the embedded arrow schema (a few KiB per file, 10%+ of a small
    // partition): the Parquet schema and logical types say all readers need.
    let options = ArrowWriterOptions::new()
        .with_properties(properties)
        .with_skip_arrow_metadata(true);
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new_with_options(&mut bytes, batch.schema(), options)
        .map_err(|err| err.to_string())?;
    writer.write(batch).map_err(|err| err.to_string())?;
    writer.close().map_err(|err| err.to_string())?;
    Ok(bytes)
}

/// The row count a Parquet file's footer declares.
pub fn footer_rows(bytes: &bytes::Bytes) -> Result<u64, String> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
        .map_err(|err| format!("not a readable Parquet file: {err}"))?;
    Ok(builder.metadata().file_metadata().num_rows() as u64)
}

fn batches(bytes: bytes::Bytes, schema: &SchemaRef) -> Result<Vec<RecordBatch>, String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|builder| builder.build())
        .map_err(|err| format!("reading Parquet: {err}"))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|err| format!("reading Parquet: {err}"))?;
        let found = batch.schema();
        if let Some(missing) = schema
            .fields()
            .iter()
            .find(|field| found.field_with_name(field.name()).is_err())
        {
            return Err(format!(
                "the file lacks column {:?} of the archive schema",
                missing.name()
            ));
        }
        out.push(batch);
    }
    Ok(out)
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> &'a ArrayRef {
    batch
        .column_by_name(name)
        .expect("the schema was checked against the archive's")
}

fn text(batch: &RecordBatch, name: &str, row: usize) -> String {
    column(batch, name)
        .as_string::<i32>()
        .value(row)
        .to_string()
}

fn optional_text(batch: &RecordBatch, name: &str, row: usize) -> Option<String> {
    let array = column(batch, name).as_string::<i32>();
    (!array.is_null(row)).then(|| array.value(row).to_string())
}

fn micros(batch: &RecordBatch, name: &str, row: usize) -> Micros {
    column(batch, name)
        .as_primitive::<TimestampMicrosecondType>()
        .value(row)
}

fn optional_micros(batch: &RecordBatch, name: &str, row: usize) -> Option<Micros> {
    let array = column(batch, name).as_primitive::<TimestampMicrosecondType>();
    (!array.is_null(row)).then(|| array.value(row))
}

fn text_list(batch: &RecordBatch, name: &str, row: usize) -> Vec<String> {
    let list = column(batch, name).as_list::<i32>().value(row);
    let values = list.as_string::<i32>();
    (0..values.len())
        .map(|i| values.value(i).to_string())
        .collect()
}

fn boolean(batch: &RecordBatch, name: &str, row: usize) -> bool {
    column(batch, name).as_boolean().value(row)
}

fn conversation_number(text: &str) -> Result<u64, String> {
    ConversationId::parse(text)
        .map(|id| id.0)
        .ok_or_else(|| format!("bad conversation id {text:?} in the archive"))
}

/// Conversations rows of a file, for `bot_id`.
pub fn decode_conversations(
    bytes: bytes::Bytes,
    bot_id: &str,
) -> Result<Vec<ConversationRecord>, String> {
    let mut out = Vec::new();
    for batch in batches(bytes, &CONVERSATIONS)? {
        for row in 0..batch.num_rows() {
            let details: Vec<serde_json::Value> =
                serde_json::from_str(&text(&batch, "tag_details", row))
                    .map_err(|err| err.to_string())?;
            let tags = details
                .iter()
                .map(|d| TagRecord {
                    tag: d["tag"].as_str().unwrap_or_default().to_string(),
                    rule: d["rule"].as_str().unwrap_or_default().to_string(),
                    rule_version: d["rule_version"].as_u64().unwrap_or(0) as u32,
                    message_ids: d["message_ids"]
                        .as_array()
                        .map(|ids| {
                            ids.iter()
                                .filter_map(|id| id.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                    reason: d["reason"].as_str().unwrap_or_default().to_string(),
                })
                .collect();
            out.push(ConversationRecord {
                id: conversation_number(&text(&batch, "conversation_id", row))?,
                bot_id: bot_id.to_string(),
                user_key: UserKey(text(&batch, "user_key", row)),
                channel: text(&batch, "channel", row),
                session_id: optional_text(&batch, "session_id", row),
                started_at: micros(&batch, "started_at", row),
                last_message_at: micros(&batch, "last_message_at", row),
                message_count: column(&batch, "message_count")
                    .as_primitive::<Int64Type>()
                    .value(row) as u64,
                flows: text_list(&batch, "flows", row),
                dropoff: optional_text(&batch, "dropoff_flow", row)
                    .map(|flow| (flow, optional_text(&batch, "dropoff_step", row))),
                flagged_at: optional_micros(&batch, "flagged_at", row),
                flag_note: optional_text(&batch, "flag_note", row),
                debug: false,
                labels: text_list(&batch, "labels", row),
                tags,
            });
        }
    }
    Ok(out)
}

/// Messages rows of a file whose conversation is in `wanted`, in file order.
pub fn decode_messages(
    bytes: bytes::Bytes,
    wanted: &dyn Fn(u64) -> bool,
) -> Result<Vec<MessageRecord>, String> {
    let mut out = Vec::new();
    for batch in batches(bytes, &MESSAGES)? {
        let confidence = column(&batch, "confidence").as_primitive::<Float64Type>();
        let position = column(&batch, "position").as_primitive::<Int32Type>();
        for row in 0..batch.num_rows() {
            let conversation_id = conversation_number(&text(&batch, "conversation_id", row))?;
            if !wanted(conversation_id) {
                continue;
            }
            out.push(MessageRecord {
                seq: position.value(row) as u64,
                id: text(&batch, "message_id", row),
                conversation_id,
                role: text(&batch, "role", row),
                text: text(&batch, "text", row),
                timestamp: micros(&batch, "ts", row),
                flow: optional_text(&batch, "flow", row),
                step: optional_text(&batch, "step", row),
                node_id: optional_text(&batch, "node_id", row),
                node_type: optional_text(&batch, "node_type", row),
                node_name: optional_text(&batch, "node_name", row),
                intent: optional_text(&batch, "intent", row),
                confidence: (!confidence.is_null(row)).then(|| confidence.value(row)),
                unidentified: boolean(&batch, "unidentified", row),
                flow_completed: boolean(&batch, "flow_completed", row),
                metadata: optional_text(&batch, "metadata", row),
            });
        }
    }
    Ok(out)
}
