//! The archive's Parquet format (the contract is `archive/README.md`): one
//! table of column descriptors per archived table, from which the arrow
//! schema, the encoder and the decoder for restores are all derived.
//!
//! A column is declared once, in [`message_columns`] or
//! [`conversation_columns`]: its name, its [`Value`] kind (which fixes the
//! arrow type and nullability), how a row writes it and how a restore reads it
//! back. Adding a column there is the whole change; its position in the table
//! is its position in the file, so columns are only ever appended (the format
//! changes only by adding columns).
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
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

/// Version of the archive's schema, written into every file's key-value metadata.
/// 2 added the messages' `lang`; files of version 1 lack it and read as null.
pub const SCHEMA_VERSION: u32 = 2;

/// Rows per row group: large enough for good compression and few footers,
/// small enough that an engine can skip by statistics.
const ROW_GROUP_ROWS: usize = 122_880;

/// Bytes that are not a file of the archived table they should be: not
/// Parquet, a column missing or of another type, a value that can't be read back.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(String);

/// One row of the messages table as written.
#[derive(Debug, Clone, Copy)]
pub struct MessageRow<'a> {
    /// The conversation the message belongs to.
    pub conversation: &'a ConversationRecord,
    /// The conversation's user's display name.
    pub pseudonym: &'a str,
    pub message: &'a MessageRecord,
    /// Order in the conversation, from 0.
    pub position: i32,
    /// When the run was planned.
    pub archived_at: Micros,
}

/// One row of the conversations table as written.
#[derive(Debug, Clone, Copy)]
pub struct ConversationRow<'a> {
    pub conversation: &'a ConversationRecord,
    /// The conversation's user's display name.
    pub pseudonym: &'a str,
    /// When the run was planned.
    pub archived_at: Micros,
}

/// One column of an archived table: written from rows `R`, read back into records `T`.
pub struct Column<'a, R, T> {
    /// The column's name in the file.
    pub name: &'static str,
    /// Its kind, writer and reader.
    pub value: Value<'a, R, T>,
    /// The schema version that added it: files written before lack it, and a
    /// restore leaves the record's default.
    pub since: u32,
}

/// A column's kind, which fixes its arrow type and nullability, with how a
/// row writes it and how a restore reads it into a record (`None` for columns
/// derived from others, which a restore does not need).
pub enum Value<'a, R, T> {
    /// `Utf8`, never null.
    Text(fn(&R) -> &'a str, Option<fn(&mut T, String)>),
    /// `Utf8`, nullable.
    OptionalText(
        fn(&R) -> Option<&'a str>,
        Option<fn(&mut T, Option<String>)>,
    ),
    /// A conversation id as its public form `c_<hex>`: `Utf8`, never null.
    ConversationId(fn(&R) -> u64, Option<fn(&mut T, u64)>),
    /// `Int32`, never null.
    Int32(fn(&R) -> i32, Option<fn(&mut T, i32)>),
    /// `Int64`, never null.
    Int64(fn(&R) -> i64, Option<fn(&mut T, i64)>),
    /// `Float64`, nullable.
    OptionalFloat64(fn(&R) -> Option<f64>, Option<fn(&mut T, Option<f64>)>),
    /// `Boolean`, never null.
    Boolean(fn(&R) -> bool, Option<fn(&mut T, bool)>),
    /// `Timestamp(µs, UTC)`, never null.
    Timestamp(fn(&R) -> Micros, Option<fn(&mut T, Micros)>),
    /// `Timestamp(µs, UTC)`, nullable.
    OptionalTimestamp(fn(&R) -> Option<Micros>, Option<fn(&mut T, Option<Micros>)>),
    /// `List<Utf8>`, never null (maybe empty); the writer pushes the row's items.
    TextList(fn(&R, &mut Vec<&'a str>), Option<fn(&mut T, Vec<String>)>),
    /// Tags with their explanations as a JSON array: `Utf8`, never null.
    TagDetails(
        fn(&R) -> &'a [TagRecord],
        Option<fn(&mut T, Vec<TagRecord>)>,
    ),
}

fn column<'a, R, T>(name: &'static str, value: Value<'a, R, T>) -> Column<'a, R, T> {
    Column {
        name,
        value,
        since: 1,
    }
}

/// The messages table, in file order: one row per message (`bot_id` and
/// `date` live in the path). A restore reads back the message's own columns.
pub fn message_columns<'a>() -> Vec<Column<'a, MessageRow<'a>, MessageRecord>> {
    use Value::*;
    vec![
        column(
            "conversation_id",
            ConversationId(|r| r.conversation.id, Some(|m, id| m.conversation_id = id)),
        ),
        column(
            "position",
            Int32(|r| r.position, Some(|m, position| m.seq = position as u64)),
        ),
        column(
            "message_id",
            Text(|r| &r.message.id, Some(|m, id| m.id = id)),
        ),
        column(
            "ts",
            Timestamp(|r| r.message.timestamp, Some(|m, ts| m.timestamp = ts)),
        ),
        column("user_key", Text(|r| &r.conversation.user_key.0, None)),
        column("pseudonym", Text(|r| r.pseudonym, None)),
        column("channel", Text(|r| &r.conversation.channel, None)),
        column(
            "session_id",
            OptionalText(|r| r.conversation.session_id.as_deref(), None),
        ),
        column(
            "role",
            Text(|r| &r.message.role, Some(|m, role| m.role = role)),
        ),
        column(
            "text",
            Text(|r| &r.message.text, Some(|m, text| m.text = text)),
        ),
        column(
            "flow",
            OptionalText(|r| r.message.flow.as_deref(), Some(|m, flow| m.flow = flow)),
        ),
        column(
            "step",
            OptionalText(|r| r.message.step.as_deref(), Some(|m, step| m.step = step)),
        ),
        column(
            "node_id",
            OptionalText(
                |r| r.message.node_id.as_deref(),
                Some(|m, id| m.node_id = id),
            ),
        ),
        column(
            "node_type",
            OptionalText(
                |r| r.message.node_type.as_deref(),
                Some(|m, node_type| m.node_type = node_type),
            ),
        ),
        column(
            "node_name",
            OptionalText(
                |r| r.message.node_name.as_deref(),
                Some(|m, name| m.node_name = name),
            ),
        ),
        column(
            "intent",
            OptionalText(
                |r| r.message.intent.as_deref(),
                Some(|m, intent| m.intent = intent),
            ),
        ),
        column(
            "confidence",
            OptionalFloat64(
                |r| r.message.confidence,
                Some(|m, confidence| m.confidence = confidence),
            ),
        ),
        column(
            "unidentified",
            Boolean(
                |r| r.message.unidentified,
                Some(|m, value| m.unidentified = value),
            ),
        ),
        column(
            "flow_completed",
            Boolean(
                |r| r.message.flow_completed,
                Some(|m, value| m.flow_completed = value),
            ),
        ),
        column(
            "metadata",
            OptionalText(
                |r| r.message.metadata.as_deref(),
                Some(|m, metadata| m.metadata = metadata),
            ),
        ),
        Column {
            since: 2,
            ..column(
                "lang",
                OptionalText(|r| r.message.lang.as_deref(), Some(|m, lang| m.lang = lang)),
            )
        },
        column(
            "tags",
            TextList(
                |r, out| out.extend(r.conversation.tags.iter().map(|t| t.tag.as_str())),
                None,
            ),
        ),
        column(
            "labels",
            TextList(
                |r, out| out.extend(r.conversation.labels.iter().map(String::as_str)),
                None,
            ),
        ),
        column(
            "flagged",
            Boolean(|r| r.conversation.flagged_at.is_some(), None),
        ),
        column("archived_at", Timestamp(|r| r.archived_at, None)),
    ]
}

/// The conversations table, in file order: one row per conversation
/// (partitioned by the date it started). A restore reads back everything but
/// what derives from other columns.
pub fn conversation_columns<'a>() -> Vec<Column<'a, ConversationRow<'a>, ConversationRecord>> {
    use Value::*;
    vec![
        column(
            "conversation_id",
            ConversationId(|r| r.conversation.id, Some(|c, id| c.id = id)),
        ),
        column(
            "user_key",
            Text(
                |r| &r.conversation.user_key.0,
                Some(|c, key| c.user_key = UserKey(key)),
            ),
        ),
        column("pseudonym", Text(|r| r.pseudonym, None)),
        column(
            "channel",
            Text(
                |r| &r.conversation.channel,
                Some(|c, channel| c.channel = channel),
            ),
        ),
        column(
            "session_id",
            OptionalText(
                |r| r.conversation.session_id.as_deref(),
                Some(|c, session| c.session_id = session),
            ),
        ),
        column(
            "started_at",
            Timestamp(
                |r| r.conversation.started_at,
                Some(|c, at| c.started_at = at),
            ),
        ),
        column(
            "last_message_at",
            Timestamp(
                |r| r.conversation.last_message_at,
                Some(|c, at| c.last_message_at = at),
            ),
        ),
        column(
            "message_count",
            Int64(
                |r| r.conversation.message_count as i64,
                Some(|c, count| c.message_count = count as u64),
            ),
        ),
        column(
            "flows",
            TextList(
                |r, out| out.extend(r.conversation.flows.iter().map(String::as_str)),
                Some(|c, flows| c.flows = flows),
            ),
        ),
        // Read in this order: the step belongs to the flow read just before.
        column(
            "dropoff_flow",
            OptionalText(
                |r| {
                    r.conversation
                        .dropoff
                        .as_ref()
                        .map(|(flow, _)| flow.as_str())
                },
                Some(|c, flow| c.dropoff = flow.map(|flow| (flow, None))),
            ),
        ),
        column(
            "dropoff_step",
            OptionalText(
                |r| {
                    r.conversation
                        .dropoff
                        .as_ref()
                        .and_then(|(_, step)| step.as_deref())
                },
                Some(|c, step| {
                    if let Some((_, at)) = &mut c.dropoff {
                        *at = step;
                    }
                }),
            ),
        ),
        column(
            "flagged",
            Boolean(|r| r.conversation.flagged_at.is_some(), None),
        ),
        column(
            "flagged_at",
            OptionalTimestamp(
                |r| r.conversation.flagged_at,
                Some(|c, at| c.flagged_at = at),
            ),
        ),
        column(
            "flag_note",
            OptionalText(
                |r| r.conversation.flag_note.as_deref(),
                Some(|c, note| c.flag_note = note),
            ),
        ),
        column(
            "labels",
            TextList(
                |r, out| out.extend(r.conversation.labels.iter().map(String::as_str)),
                Some(|c, labels| c.labels = labels),
            ),
        ),
        column(
            "tags",
            TextList(
                |r, out| out.extend(r.conversation.tags.iter().map(|t| t.tag.as_str())),
                None,
            ),
        ),
        column(
            "tag_details",
            TagDetails(|r| &r.conversation.tags, Some(|c, tags| c.tags = tags)),
        ),
        column("archived_at", Timestamp(|r| r.archived_at, None)),
    ]
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn strings() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

impl<'a, R, T> Value<'a, R, T> {
    /// The arrow type of the column.
    pub fn data_type(&self) -> DataType {
        match self {
            Value::Text(..)
            | Value::OptionalText(..)
            | Value::ConversationId(..)
            | Value::TagDetails(..) => DataType::Utf8,
            Value::Int32(..) => DataType::Int32,
            Value::Int64(..) => DataType::Int64,
            Value::OptionalFloat64(..) => DataType::Float64,
            Value::Boolean(..) => DataType::Boolean,
            Value::Timestamp(..) | Value::OptionalTimestamp(..) => timestamp(),
            Value::TextList(..) => strings(),
        }
    }

    /// Whether the column may hold nulls.
    pub fn nullable(&self) -> bool {
        matches!(
            self,
            Value::OptionalText(..) | Value::OptionalFloat64(..) | Value::OptionalTimestamp(..)
        )
    }

    /// Whether a restore reads the column back.
    pub fn is_read(&self) -> bool {
        match self {
            Value::Text(_, read) => read.is_some(),
            Value::OptionalText(_, read) => read.is_some(),
            Value::ConversationId(_, read) => read.is_some(),
            Value::Int32(_, read) => read.is_some(),
            Value::Int64(_, read) => read.is_some(),
            Value::OptionalFloat64(_, read) => read.is_some(),
            Value::Boolean(_, read) => read.is_some(),
            Value::Timestamp(_, read) => read.is_some(),
            Value::OptionalTimestamp(_, read) => read.is_some(),
            Value::TextList(_, read) => read.is_some(),
            Value::TagDetails(_, read) => read.is_some(),
        }
    }

    /// Whether a column read from a file, of type `found`, can be read as this kind.
    ///
    /// Files are written without the arrow schema, so what comes back is the
    /// reader's mapping of the Parquet types: the list's item field and the
    /// timestamp's zone are not compared.
    fn accepts(&self, found: &DataType) -> bool {
        match (self.data_type(), found) {
            (DataType::Timestamp(unit, _), DataType::Timestamp(found, _)) => unit == *found,
            (DataType::List(_), DataType::List(item)) => item.data_type() == &DataType::Utf8,
            (expected, found) => expected == *found,
        }
    }

    /// The column's values for `rows`.
    fn array(&self, rows: &[R]) -> ArrayRef {
        match self {
            Value::Text(get, _) => {
                let mut builder = StringBuilder::new();
                for row in rows {
                    builder.append_value(get(row));
                }
                Arc::new(builder.finish())
            }
            Value::OptionalText(get, _) => {
                let mut builder = StringBuilder::new();
                for row in rows {
                    builder.append_option(get(row));
                }
                Arc::new(builder.finish())
            }
            Value::ConversationId(get, _) => {
                let mut builder = StringBuilder::new();
                let mut text = String::new();
                for row in rows {
                    text.clear();
                    write!(text, "{}", ConversationId(get(row))).expect("writing to a string");
                    builder.append_value(&text);
                }
                Arc::new(builder.finish())
            }
            Value::Int32(get, _) => {
                let mut builder = Int32Builder::with_capacity(rows.len());
                for row in rows {
                    builder.append_value(get(row));
                }
                Arc::new(builder.finish())
            }
            Value::Int64(get, _) => {
                let mut builder = Int64Builder::with_capacity(rows.len());
                for row in rows {
                    builder.append_value(get(row));
                }
                Arc::new(builder.finish())
            }
            Value::OptionalFloat64(get, _) => {
                let mut builder = Float64Builder::with_capacity(rows.len());
                for row in rows {
                    builder.append_option(get(row));
                }
                Arc::new(builder.finish())
            }
            Value::Boolean(get, _) => {
                let mut builder = BooleanBuilder::with_capacity(rows.len());
                for row in rows {
                    builder.append_value(get(row));
                }
                Arc::new(builder.finish())
            }
            Value::Timestamp(get, _) => {
                let mut builder =
                    TimestampMicrosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
                for row in rows {
                    builder.append_value(get(row));
                }
                Arc::new(builder.finish())
            }
            Value::OptionalTimestamp(get, _) => {
                let mut builder =
                    TimestampMicrosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
                for row in rows {
                    builder.append_option(get(row));
                }
                Arc::new(builder.finish())
            }
            Value::TextList(get, _) => {
                let mut builder = ListBuilder::new(StringBuilder::new());
                let mut items = Vec::new();
                for row in rows {
                    items.clear();
                    get(row, &mut items);
                    for item in &items {
                        builder.values().append_value(item);
                    }
                    builder.append(true);
                }
                Arc::new(builder.finish())
            }
            Value::TagDetails(get, _) => {
                let mut builder = StringBuilder::new();
                for row in rows {
                    builder.append_value(tag_details_json(get(row)));
                }
                Arc::new(builder.finish())
            }
        }
    }

    /// Reads the column's values at `rows` of `array` into `records` (one per row).
    fn read(
        &self,
        name: &str,
        array: &ArrayRef,
        rows: &[usize],
        records: &mut [T],
    ) -> Result<(), FormatError> {
        let at = rows.iter().copied().zip(records.iter_mut());
        match self {
            Value::Text(_, Some(set)) => {
                let array = array.as_string::<i32>();
                for (row, record) in at {
                    present(array, name, row)?;
                    set(record, array.value(row).to_string());
                }
            }
            Value::OptionalText(_, Some(set)) => {
                let array = array.as_string::<i32>();
                for (row, record) in at {
                    set(
                        record,
                        (!array.is_null(row)).then(|| array.value(row).to_string()),
                    );
                }
            }
            Value::ConversationId(_, Some(set)) => {
                let array = array.as_string::<i32>();
                for (row, record) in at {
                    present(array, name, row)?;
                    let text = array.value(row);
                    let id = ConversationId::parse(text).ok_or_else(|| {
                        FormatError(format!("bad conversation id {text:?} in the archive"))
                    })?;
                    set(record, id.0);
                }
            }
            Value::Int32(_, Some(set)) => {
                let array = array.as_primitive::<Int32Type>();
                for (row, record) in at {
                    present(array, name, row)?;
                    set(record, array.value(row));
                }
            }
            Value::Int64(_, Some(set)) => {
                let array = array.as_primitive::<Int64Type>();
                for (row, record) in at {
                    present(array, name, row)?;
                    set(record, array.value(row));
                }
            }
            Value::OptionalFloat64(_, Some(set)) => {
                let array = array.as_primitive::<Float64Type>();
                for (row, record) in at {
                    set(record, (!array.is_null(row)).then(|| array.value(row)));
                }
            }
            Value::Boolean(_, Some(set)) => {
                let array = array.as_boolean();
                for (row, record) in at {
                    present(array, name, row)?;
                    set(record, array.value(row));
                }
            }
            Value::Timestamp(_, Some(set)) => {
                let array = array.as_primitive::<TimestampMicrosecondType>();
                for (row, record) in at {
                    present(array, name, row)?;
                    set(record, array.value(row));
                }
            }
            Value::OptionalTimestamp(_, Some(set)) => {
                let array = array.as_primitive::<TimestampMicrosecondType>();
                for (row, record) in at {
                    set(record, (!array.is_null(row)).then(|| array.value(row)));
                }
            }
            Value::TextList(_, Some(set)) => {
                let array = array.as_list::<i32>();
                for (row, record) in at {
                    present(array, name, row)?;
                    let items = array.value(row);
                    let items = items.as_string::<i32>();
                    set(
                        record,
                        (0..items.len())
                            .map(|i| items.value(i).to_string())
                            .collect(),
                    );
                }
            }
            Value::TagDetails(_, Some(set)) => {
                let array = array.as_string::<i32>();
                for (row, record) in at {
                    present(array, name, row)?;
                    set(record, parse_tag_details(array.value(row))?);
                }
            }
            // Written only: derived from other columns.
            _ => {}
        }
        Ok(())
    }
}

/// A null in a column that never holds one is a damaged file.
fn present(array: &dyn Array, name: &str, row: usize) -> Result<(), FormatError> {
    if array.is_null(row) {
        return Err(FormatError(format!("null in column {name:?}, row {row}")));
    }
    Ok(())
}

/// The arrow schema of a table of columns.
pub fn schema<R, T>(columns: &[Column<'_, R, T>]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(c.name, c.value.data_type(), c.value.nullable()))
            .collect::<Vec<_>>(),
    ))
}

/// The schema of the messages table.
pub static MESSAGES: LazyLock<SchemaRef> = LazyLock::new(|| schema(&message_columns()));

/// The schema of the conversations table.
pub static CONVERSATIONS: LazyLock<SchemaRef> = LazyLock::new(|| schema(&conversation_columns()));

fn batch<R, T>(columns: &[Column<'_, R, T>], schema: &SchemaRef, rows: &[R]) -> RecordBatch {
    let arrays: Vec<ArrayRef> = columns.iter().map(|c| c.value.array(rows)).collect();
    RecordBatch::try_new(schema.clone(), arrays).expect("the arrays follow the schema's columns")
}

/// The messages rows of some conversations: `(conversation, messages)` pairs,
/// rows in the order given (callers sort by conversation, then time).
pub fn messages_batch(
    rows: &[(&ConversationRecord, Vec<&MessageRecord>)],
    archived_at: Micros,
) -> RecordBatch {
    let pseudonyms: Vec<String> = rows.iter().map(|(c, _)| pseudonym(&c.user_key)).collect();
    let mut table = Vec::with_capacity(rows.iter().map(|(_, m)| m.len()).sum());
    for ((conversation, messages), pseudonym) in rows.iter().zip(&pseudonyms) {
        for (position, message) in messages.iter().enumerate() {
            table.push(MessageRow {
                conversation,
                pseudonym,
                message,
                position: position as i32,
                archived_at,
            });
        }
    }
    batch(&message_columns(), &MESSAGES, &table)
}

/// One row per conversation, in the order given.
pub fn conversations_batch(rows: &[&ConversationRecord], archived_at: Micros) -> RecordBatch {
    let pseudonyms: Vec<String> = rows.iter().map(|c| pseudonym(&c.user_key)).collect();
    let table: Vec<ConversationRow<'_>> = rows
        .iter()
        .zip(&pseudonyms)
        .map(|(conversation, pseudonym)| ConversationRow {
            conversation,
            pseudonym,
            archived_at,
        })
        .collect();
    batch(&conversation_columns(), &CONVERSATIONS, &table)
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

fn parse_tag_details(text: &str) -> Result<Vec<TagRecord>, FormatError> {
    let details: Vec<serde_json::Value> = serde_json::from_str(text)
        .map_err(|err| FormatError(format!("tag_details is not a JSON array: {err}")))?;
    Ok(details
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
        .collect())
}

/// Encodes a batch as one zstd Parquet file; the same batch gives the same bytes.
pub fn encode(batch: &RecordBatch, table: &str, run_id: u64) -> Result<Vec<u8>, ParquetError> {
    encode_with(
        batch,
        vec![
            KeyValue::new(
                "convlog.schema_version".to_string(),
                SCHEMA_VERSION.to_string(),
            ),
            KeyValue::new("convlog.table".to_string(), table.to_string()),
            KeyValue::new("convlog.run".to_string(), run_id.to_string()),
        ],
    )
}

/// An archived object without the rows of one end user (`user_key`), for an
/// erasure: every other row, column and metadata entry as it was (a file of
/// an older schema version stays that version). `None` when the object holds
/// none of the user's rows; an empty batch when it holds only theirs.
pub fn without_user(
    bytes: bytes::Bytes,
    user_key: &str,
) -> Result<Option<(Vec<u8>, u64)>, FormatError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|err| FormatError(format!("not a readable Parquet file: {err}")))?;
    let metadata = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let reader = builder
        .build()
        .map_err(|err| FormatError(format!("not a readable Parquet file: {err}")))?;
    let schema = arrow_array::RecordBatchReader::schema(&reader);
    let mut kept = Vec::new();
    let mut removed = false;
    for batch in reader {
        let batch = batch.map_err(|err| FormatError(format!("reading Parquet: {err}")))?;
        let keys = batch
            .column_by_name("user_key")
            .and_then(|column| column.as_string_opt::<i32>())
            .ok_or_else(|| FormatError("no user_key column of strings".into()))?;
        let keep: arrow_array::BooleanArray =
            keys.iter().map(|key| Some(key != Some(user_key))).collect();
        if keep.true_count() < batch.num_rows() {
            removed = true;
        }
        kept.push(
            arrow_select::filter::filter_record_batch(&batch, &keep)
                .map_err(|err| FormatError(format!("filtering rows: {err}")))?,
        );
    }
    if !removed {
        return Ok(None);
    }
    let batch = arrow_select::concat::concat_batches(&schema, &kept)
        .map_err(|err| FormatError(format!("joining batches: {err}")))?;
    let rows = batch.num_rows() as u64;
    let bytes = encode_with(&batch, metadata)
        .map_err(|err| FormatError(format!("writing Parquet: {err}")))?;
    Ok(Some((bytes, rows)))
}

fn encode_with(batch: &RecordBatch, metadata: Vec<KeyValue>) -> Result<Vec<u8>, ParquetError> {
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(metadata))
        .build();
    // Without the embedded arrow schema (a few KiB per file, 10%+ of a small
    // partition): the Parquet schema and logical types say all readers need.
    let options = ArrowWriterOptions::new()
        .with_properties(properties)
        .with_skip_arrow_metadata(true);
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new_with_options(&mut bytes, batch.schema(), options)?;
    writer.write(batch)?;
    writer.close()?;
    Ok(bytes)
}

/// The row count a Parquet file's footer declares.
pub fn footer_rows(bytes: &bytes::Bytes) -> Result<u64, FormatError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
        .map_err(|err| FormatError(format!("not a readable Parquet file: {err}")))?;
    Ok(builder.metadata().file_metadata().num_rows() as u64)
}

/// The file's batches, once every column of `columns` is found in it, and
/// every column a restore reads has a type it can be read as.
fn batches<R, T>(
    bytes: bytes::Bytes,
    columns: &[Column<'_, R, T>],
) -> Result<Vec<RecordBatch>, FormatError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|builder| builder.build())
        .map_err(|err| FormatError(format!("not a readable Parquet file: {err}")))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|err| FormatError(format!("reading Parquet: {err}")))?;
        let found = batch.schema();
        for column in columns {
            let Ok(field) = found.field_with_name(column.name) else {
                if column.since > 1 {
                    continue;
                }
                return Err(FormatError(format!(
                    "the file lacks column {:?} of the archive schema",
                    column.name
                )));
            };
            if column.value.is_read() && !column.value.accepts(field.data_type()) {
                return Err(FormatError(format!(
                    "column {:?} is {}, not {}",
                    column.name,
                    field.data_type(),
                    column.value.data_type()
                )));
            }
        }
        out.push(batch);
    }
    Ok(out)
}

/// Records of `batch` at `rows`, each made by `empty` and filled in by every column that is read.
fn records<R, T>(
    columns: &[Column<'_, R, T>],
    batch: &RecordBatch,
    rows: &[usize],
    empty: impl Fn() -> T,
) -> Result<Vec<T>, FormatError> {
    let mut records: Vec<T> = rows.iter().map(|_| empty()).collect();
    for column in columns {
        // Only a column added after the file was written may be missing (see `batches`).
        let Some(array) = batch.column_by_name(column.name) else {
            continue;
        };
        column.value.read(column.name, array, rows, &mut records)?;
    }
    Ok(records)
}

/// Conversations rows of a file, for `bot_id`.
pub fn decode_conversations(
    bytes: bytes::Bytes,
    bot_id: &str,
) -> Result<Vec<ConversationRecord>, FormatError> {
    let columns = conversation_columns();
    let mut out = Vec::new();
    for batch in batches(bytes, &columns)? {
        let rows: Vec<usize> = (0..batch.num_rows()).collect();
        out.extend(records(&columns, &batch, &rows, || ConversationRecord {
            bot_id: bot_id.to_string(),
            ..ConversationRecord::default()
        })?);
    }
    Ok(out)
}

/// Messages rows of a file whose conversation is in `wanted`, in file order.
pub fn decode_messages(
    bytes: bytes::Bytes,
    wanted: &dyn Fn(u64) -> bool,
) -> Result<Vec<MessageRecord>, FormatError> {
    let columns = message_columns();
    // The conversation is read first, and the rest only of the rows wanted.
    let key = columns
        .iter()
        .position(|c| c.name == "conversation_id")
        .expect("the messages table has conversation_id");
    let key = std::slice::from_ref(&columns[key]);
    let mut out = Vec::new();
    for batch in batches(bytes, &columns)? {
        let all: Vec<usize> = (0..batch.num_rows()).collect();
        let rows: Vec<usize> = records(key, &batch, &all, MessageRecord::default)?
            .iter()
            .zip(all)
            .filter(|(message, _)| wanted(message.conversation_id))
            .map(|(_, row)| row)
            .collect();
        out.extend(records(&columns, &batch, &rows, MessageRecord::default)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tag(name: &str, ids: &[&str]) -> TagRecord {
        TagRecord {
            tag: name.to_string(),
            rule: format!("{name}-rule"),
            rule_version: 3,
            message_ids: ids.iter().map(|id| id.to_string()).collect(),
            reason: format!("because of {name}"),
        }
    }

    /// A conversation whose every field has a value of its own, so a reader
    /// that fills another field than its writer read is caught.
    fn full_conversation() -> ConversationRecord {
        ConversationRecord {
            id: 0x2a,
            bot_id: "shop".into(),
            user_key: UserKey("0123456789abcdef0123".into()),
            channel: "web".into(),
            session_id: Some("session-1".into()),
            started_at: 1_700_000_000_000_001,
            last_message_at: 1_700_000_600_000_002,
            message_count: 2,
            flows: vec!["checkout".into(), "refund".into()],
            dropoff: Some(("refund".into(), Some("amount".into()))),
            flagged_at: Some(1_700_000_700_000_003),
            flag_note: Some("look at this".into()),
            debug: false,
            labels: vec!["Refund".into(), "VIP".into()],
            tags: vec![tag("dropoff", &["m-2"]), tag("agent_handoff", &[])],
        }
    }

    /// The same with every optional field empty.
    fn bare_conversation() -> ConversationRecord {
        ConversationRecord {
            id: 7,
            session_id: None,
            flows: Vec::new(),
            dropoff: None,
            flagged_at: None,
            flag_note: None,
            labels: Vec::new(),
            tags: Vec::new(),
            ..full_conversation()
        }
    }

    fn full_message(conversation: &ConversationRecord, seq: u64) -> MessageRecord {
        MessageRecord {
            seq,
            id: format!("m-{seq}"),
            conversation_id: conversation.id,
            role: "user".into(),
            text: "where is my money".into(),
            timestamp: conversation.started_at + seq as i64,
            flow: Some("flow".into()),
            step: Some("step".into()),
            node_id: Some("node-id".into()),
            node_type: Some("node-type".into()),
            node_name: Some("node-name".into()),
            intent: Some("intent".into()),
            confidence: Some(0.25),
            unidentified: true,
            flow_completed: false,
            metadata: Some(r#"{"k":1}"#.into()),
            lang: Some("de".into()),
        }
    }

    fn bare_message(conversation: &ConversationRecord, seq: u64) -> MessageRecord {
        MessageRecord {
            flow: None,
            step: None,
            node_id: None,
            node_type: None,
            node_name: None,
            intent: None,
            confidence: None,
            unidentified: false,
            flow_completed: true,
            metadata: None,
            lang: None,
            ..full_message(conversation, seq)
        }
    }

    fn file(batch: &RecordBatch, table: &str) -> bytes::Bytes {
        bytes::Bytes::from(encode(batch, table, 1).unwrap())
    }

    /// What a restore gets back of conversations written to a file.
    fn conversations_round_trip(conversations: &[ConversationRecord]) -> Vec<ConversationRecord> {
        let rows: Vec<&ConversationRecord> = conversations.iter().collect();
        let bytes = file(&conversations_batch(&rows, 99), "conversations");
        decode_conversations(bytes, &conversations[0].bot_id).unwrap()
    }

    /// What a restore gets back of messages written to a file.
    fn messages_round_trip(
        rows: &[(ConversationRecord, Vec<MessageRecord>)],
    ) -> Vec<MessageRecord> {
        let rows: Vec<(&ConversationRecord, Vec<&MessageRecord>)> = rows
            .iter()
            .map(|(c, messages)| (c, messages.iter().collect()))
            .collect();
        let bytes = file(&messages_batch(&rows, 99), "messages");
        decode_messages(bytes, &|_| true).unwrap()
    }

    #[test]
    fn every_conversation_column_reads_back_what_it_wrote() {
        let conversations = vec![full_conversation(), bare_conversation()];
        assert_eq!(conversations_round_trip(&conversations), conversations);
    }

    #[test]
    fn every_message_column_reads_back_what_it_wrote() {
        let (full, bare) = (full_conversation(), bare_conversation());
        // Positions are what `seq` comes back as.
        let rows = vec![
            (
                full.clone(),
                vec![full_message(&full, 0), bare_message(&full, 1)],
            ),
            (bare.clone(), vec![bare_message(&bare, 0)]),
        ];
        let expected: Vec<MessageRecord> =
            rows.iter().flat_map(|(_, m)| m.iter().cloned()).collect();
        assert_eq!(messages_round_trip(&rows), expected);
    }

    #[test]
    fn restores_read_only_the_messages_of_the_conversations_wanted() {
        let (full, bare) = (full_conversation(), bare_conversation());
        let rows = [
            (full.clone(), vec![full_message(&full, 0)]),
            (bare.clone(), vec![bare_message(&bare, 0)]),
        ];
        let refs: Vec<(&ConversationRecord, Vec<&MessageRecord>)> = rows
            .iter()
            .map(|(c, messages)| (c, messages.iter().collect()))
            .collect();
        let bytes = file(&messages_batch(&refs, 99), "messages");
        let found = decode_messages(bytes, &|id| id == bare.id).unwrap();
        assert_eq!(found, vec![bare_message(&bare, 0)]);
    }

    #[test]
    fn derived_columns_are_written_from_the_conversation() {
        let full = full_conversation();
        let message = full_message(&full, 0);
        let batch = messages_batch(&[(&full, vec![&message])], 99);
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_string::<i32>()
                .value(0)
                .to_string()
        };
        assert_eq!(text("conversation_id"), "c_2a");
        assert_eq!(text("pseudonym"), pseudonym(&full.user_key));
        assert_eq!(text("channel"), "web");
        let tags = batch
            .column_by_name("tags")
            .unwrap()
            .as_list::<i32>()
            .value(0);
        assert_eq!(tags.as_string::<i32>().value(1), "agent_handoff");
        let archived = batch
            .column_by_name("archived_at")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>()
            .value(0);
        assert_eq!(archived, 99);
    }

    /// The `| column | type | notes |` rows of a table of `archive/README.md`:
    /// each column's name, arrow type and nullability.
    fn contract_columns(table: &str) -> Vec<(String, DataType, bool)> {
        let readme = include_str!("../../../../archive/README.md");
        let heading = format!("### `{table}` (schema version {SCHEMA_VERSION})");
        let start = readme.find(&heading).expect("the README has the table") + heading.len();
        let section = &readme[start..];
        let section = &section[..section.find("\n#").unwrap_or(section.len())];
        let mut columns = Vec::new();
        for line in section.lines().filter(|line| line.starts_with("| `")) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (data_type, nullable) = match cells[2] {
                "string" => (DataType::Utf8, false),
                "string, null" => (DataType::Utf8, true),
                "int32" => (DataType::Int32, false),
                "int64" => (DataType::Int64, false),
                "double, null" => (DataType::Float64, true),
                "boolean" => (DataType::Boolean, false),
                "timestamp (µs, UTC)" => (timestamp(), false),
                "timestamp (µs, UTC), null" => (timestamp(), true),
                "list<string>" => (strings(), false),
                other => panic!("type {other:?} of {line:?} is not one the archive writes"),
            };
            for name in cells[1].split(", ") {
                let name = name.trim_matches('`').to_string();
                columns.push((name, data_type.clone(), nullable));
            }
        }
        columns
    }

    fn schema_columns(schema: &SchemaRef) -> Vec<(String, DataType, bool)> {
        schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
            .collect()
    }

    #[test]
    fn the_columns_are_those_of_the_contract_in_archive_readme() {
        assert_eq!(schema_columns(&MESSAGES), contract_columns("messages"));
        assert_eq!(
            schema_columns(&CONVERSATIONS),
            contract_columns("conversations")
        );
    }

    #[test]
    fn a_file_of_something_else_is_refused_with_the_reason() {
        let garbage = bytes::Bytes::from_static(b"PAR1 not really");
        let err = decode_messages(garbage.clone(), &|_| true).unwrap_err();
        assert!(
            err.to_string().contains("not a readable Parquet file"),
            "{err}"
        );
        assert!(footer_rows(&garbage).is_err());
        // A messages file is not a conversations file.
        let full = full_conversation();
        let message = full_message(&full, 0);
        let messages = file(&messages_batch(&[(&full, vec![&message])], 1), "messages");
        let err = decode_conversations(messages, "shop").unwrap_err();
        assert!(err.to_string().contains("lacks column"), "{err}");
    }

    #[test]
    fn a_file_written_before_a_column_was_added_reads_it_as_null() {
        // A version 1 messages file: every column but `lang`.
        let full = full_conversation();
        let message = full_message(&full, 0);
        let batch = messages_batch(&[(&full, vec![&message])], 99);
        let without = |name: &str| {
            let at = batch.schema().index_of(name).unwrap();
            let mut old = batch.clone();
            old.remove_column(at);
            old
        };
        let found = decode_messages(file(&without("lang"), "messages"), &|_| true).unwrap();
        assert_eq!(
            found,
            vec![MessageRecord {
                lang: None,
                ..message.clone()
            }]
        );
        // A column every version has is still required.
        let err = decode_messages(file(&without("text"), "messages"), &|_| true).unwrap_err();
        assert!(err.to_string().contains("\"text\""), "{err}");
    }

    #[test]
    fn a_column_of_another_type_is_refused_not_read() {
        // The conversations schema with `message_count` as text.
        let mut fields: Vec<Field> = CONVERSATIONS
            .fields()
            .iter()
            .map(|f| (**f).clone())
            .collect();
        let full = full_conversation();
        let good = conversations_batch(&[&full], 1);
        let mut arrays: Vec<ArrayRef> = good.columns().to_vec();
        let at = CONVERSATIONS.index_of("message_count").unwrap();
        fields[at] = Field::new("message_count", DataType::Utf8, false);
        arrays[at] = Arc::new(arrow_array::StringArray::from(vec!["two"]));
        let bad = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap();
        let err = decode_conversations(file(&bad, "conversations"), "shop").unwrap_err();
        assert!(
            err.to_string().contains("\"message_count\" is Utf8"),
            "{err}"
        );
    }

    fn text() -> impl Strategy<Value = String> {
        "\\PC{0,12}"
    }

    fn tags() -> impl Strategy<Value = Vec<TagRecord>> {
        prop::collection::vec(
            (
                text(),
                text(),
                any::<u32>(),
                prop::collection::vec(text(), 0..3),
                text(),
            )
                .prop_map(|(tag, rule, rule_version, message_ids, reason)| TagRecord {
                    tag,
                    rule,
                    rule_version,
                    message_ids,
                    reason,
                }),
            0..3,
        )
    }

    prop_compose! {
        fn conversations()(
            id in any::<u64>(),
            user_key in text(),
            channel in text(),
            session_id in prop::option::of(text()),
            started_at in any::<i64>(),
            last_message_at in any::<i64>(),
            message_count in any::<u64>(),
            flows in prop::collection::vec(text(), 0..3),
            dropoff in prop::option::of((text(), prop::option::of(text()))),
            flagged_at in prop::option::of(any::<i64>()),
            flag_note in prop::option::of(text()),
            labels in prop::collection::vec(text(), 0..3),
            tags in tags(),
        ) -> ConversationRecord {
            ConversationRecord {
                id, bot_id: "b".into(), user_key: UserKey(user_key), channel, session_id,
                started_at, last_message_at, message_count, flows, dropoff, flagged_at,
                flag_note, debug: false, labels, tags,
            }
        }
    }

    prop_compose! {
        fn messages()(
            id in text(),
            role in text(),
            text in text(),
            timestamp in any::<i64>(),
            optional in prop::collection::vec(prop::option::of(text()), 8),
            confidence in prop::option::of(-1e9..1e9f64),
            unidentified in any::<bool>(),
            flow_completed in any::<bool>(),
        ) -> MessageRecord {
            let mut optional = optional.into_iter();
            let mut next = || optional.next().unwrap();
            MessageRecord {
                seq: 0, id, conversation_id: 0, role, text, timestamp,
                flow: next(), step: next(), node_id: next(), node_type: next(),
                node_name: next(), intent: next(), confidence, unidentified,
                flow_completed, metadata: next(), lang: next(),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn conversations_survive_the_round_trip(
            conversations in prop::collection::vec(conversations(), 1..4)
        ) {
            prop_assert_eq!(conversations_round_trip(&conversations), conversations);
        }

        #[test]
        fn messages_survive_the_round_trip(
            rows in prop::collection::vec(
                (conversations(), prop::collection::vec(messages(), 1..4)),
                1..4,
            )
        ) {
            let rows: Vec<(ConversationRecord, Vec<MessageRecord>)> = rows
                .into_iter()
                .map(|(c, messages)| {
                    let messages = messages
                        .into_iter()
                        .enumerate()
                        .map(|(position, m)| MessageRecord {
                            seq: position as u64,
                            conversation_id: c.id,
                            ..m
                        })
                        .collect();
                    (c, messages)
                })
                .collect();
            let expected: Vec<MessageRecord> =
                rows.iter().flat_map(|(_, m)| m.iter().cloned()).collect();
            prop_assert_eq!(messages_round_trip(&rows), expected);
        }
    }
}
