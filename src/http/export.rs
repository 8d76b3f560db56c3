//! `GET /v1/bots/{bot}/conversations/export`: the conversations a search
//! matches, streamed as CSV (one row per conversation) or NDJSON (one line
//! per message), a chunk at a time.

use super::error::AppError;
use super::openapi::{of_type, query_parameter};
use super::search::{bot_id, filters_request};
use super::views::{ConversationView, MessageView, PlacedMessageView};
use crate::app::App;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use convlog_core::ConversationId;
use convlog_engine::query::Target;
use convlog_engine::query::export::Exported;
use futures::StreamExt;
use std::fmt::Write;

/// What an export writes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    /// One row per conversation.
    Csv,
    /// One line per message, with its conversation.
    Ndjson,
}

impl Format {
    const NAMES: [&str; 2] = ["csv", "ndjson"];

    fn parse(name: &str) -> Option<Format> {
        match name {
            "csv" => Some(Format::Csv),
            "ndjson" => Some(Format::Ndjson),
            _ => None,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Ndjson => "application/x-ndjson",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        }
    }
}

/// `GET /v1/bots/{bot}/conversations/export?format=csv|ndjson&<filters>`.
pub async fn export(
    State(app): State<App>,
    Path(bot): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let bot = bot_id(&bot)?;
    let now = app.clock.now();
    let (request, own) = filters_request(query, Target::Aggregates, now, &["format"])?;
    let mut format = Format::Csv;
    for (name, value) in own {
        format = Format::parse(&value).ok_or_else(|| AppError::InvalidParameter {
            name,
            reason: format!("must be one of {}", Format::NAMES.join(", ")),
        })?;
    }
    let chunks = app
        .search
        .export(bot.clone(), request, now, format == Format::Ndjson)
        .await?;
    let header_row = match format {
        Format::Csv => Some(Ok(Bytes::from(csv_header()))),
        Format::Ndjson => None,
    };
    let rows = futures::stream::unfold(chunks, move |mut chunks| async move {
        let chunk = match chunks.recv().await? {
            Ok(chunk) => chunk,
            // The answer has begun: cutting it short is how the client learns.
            Err(err) => {
                tracing::error!(error = %err, "export stopped");
                return Some((Err(std::io::Error::other(err.to_string())), chunks));
            }
        };
        let mut out = String::new();
        for exported in &chunk {
            match format {
                Format::Csv => csv_row(&mut out, exported),
                Format::Ndjson => ndjson_lines(&mut out, exported),
            }
        }
        Some((Ok(Bytes::from(out)), chunks))
    });
    let body = futures::stream::iter(header_row).chain(rows);
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let disposition = format!(
        "attachment; filename=\"convlog-{bot}-{stamp}.{}\"",
        format.extension()
    );
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// The CSV columns, in order.
const COLUMNS: [&str; 18] = [
    "id",
    "url",
    "bot_id",
    "user",
    "channel",
    "started_at",
    "last_message_at",
    "message_count",
    "tags",
    "labels",
    "flagged",
    "flagged_at",
    "flag_note",
    "flows",
    "dropoff_flow",
    "dropoff_step",
    "debug",
    "preview",
];

fn csv_header() -> String {
    COLUMNS.join(",") + "\r\n"
}

/// One conversation as a CSV row (RFC 4180); lists are joined with "; ".
fn csv_row(out: &mut String, exported: &Exported) {
    let view = ConversationView::new(&exported.record);
    let (dropoff_flow, dropoff_step) = view
        .dropoff
        .as_ref()
        .map_or(("", ""), |d| (d.flow, d.step.unwrap_or("")));
    let cells: [&str; 18] = [
        &view.id,
        &view.url,
        view.bot_id,
        &view.user,
        view.channel,
        &view.started_at,
        &view.last_message_at,
        &view.message_count.to_string(),
        &view.tags.join("; "),
        &view.labels.join("; "),
        if view.flagged { "true" } else { "false" },
        view.flagged_at.as_deref().unwrap_or(""),
        view.flag_note.unwrap_or(""),
        &view.flows.join("; "),
        dropoff_flow,
        dropoff_step,
        if view.debug { "true" } else { "false" },
        exported.preview.as_deref().unwrap_or(""),
    ];
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_cell(out, cell);
    }
    out.push_str("\r\n");
}

/// A CSV cell: quoted when it holds a separator, quote or line break; a
/// leading `=`, `+`, `-` or `@` (a formula to a spreadsheet) gets a `'` first.
fn csv_cell(out: &mut String, cell: &str) {
    let formula = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quoted = formula || cell.contains([',', '"', '\n', '\r']);
    if quoted {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    for c in cell.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quoted {
        out.push('"');
    }
}

/// A conversation's messages, one JSON object per line.
fn ndjson_lines(out: &mut String, exported: &Exported) {
    let record = &exported.record;
    let conversation_id = ConversationId(record.id).to_string();
    for message in &exported.messages {
        let line = PlacedMessageView {
            message: MessageView::new(message, None),
            conversation_id: conversation_id.clone(),
            channel: &record.channel,
            bot_id: &record.bot_id,
        };
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string(&line).expect("a message serialises")
        );
    }
}

/// The parameters of the export beside the filters.
pub fn export_params() -> Vec<utoipa::openapi::path::Parameter> {
    use utoipa::openapi::schema::Type;
    vec![query_parameter(
        "format",
        "`csv`: one row per conversation (the default); `ndjson`: one line per message",
        of_type(Type::String).enum_values(Some(Format::NAMES)),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(text: &str) -> String {
        let mut out = String::new();
        csv_cell(&mut out, text);
        out
    }

    #[test]
    fn csv_cells_are_quoted_when_needed_and_formulas_are_defused() {
        assert_eq!(cell("plain text"), "plain text");
        assert_eq!(cell("a, b"), "\"a, b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(cell("2026-12-04T10:00:00Z"), "2026-12-04T10:00:00Z");
    }
}
