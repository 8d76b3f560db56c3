//! `convlog ingest`: messages from an NDJSON or JSON-array file, sent in
//! batches through a server or written straight into the store.
//!
//! Every message keeps its place in the file — its line (NDJSON; blank lines
//! count) or its item number in the array — so a refused batch is explained
//! with file positions, not batch offsets, together with what was stored
//! before it. Batches are all-or-nothing on the server and here alike.

use super::IngestArgs;
use super::client::{Missing, Server, Target, resolve};
use super::output::{Measure, count, print_json, progress_bar};
use crate::app::App;
use anyhow::Context;
use convlog_engine::ingest::validate::{ValidationError, validate_messages};
use serde::de::{Deserializer as _, SeqAccess, Visitor};
use serde_json::json;
use serde_json::value::RawValue;
use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc;
use std::time::Instant;

/// What an ingest key must be allowed, said when a server answers 403.
const NEEDS_INGEST: &str = "ingest needs a key with role ingest or admin for the bots in the file";
/// Problems listed before "and N more".
const SHOWN_PROBLEMS: usize = 10;
/// Validation stops at this many problems per batch (`ingest::validate`).
const MAX_DETAILS: usize = 100;
/// Array items parsed ahead of the batch being sent.
const READ_AHEAD: usize = 4096;

/// The input's format, told by its first non-blank byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One message per line.
    Ndjson,
    /// A JSON array of messages (the format `POST /v1/messages` takes by default).
    JsonArray,
}

impl Format {
    /// What a position counts.
    fn unit(self) -> &'static str {
        match self {
            Format::Ndjson => "line",
            Format::JsonArray => "item",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Ndjson => "ndjson",
            Format::JsonArray => "json-array",
        }
    }

    /// `line 7 was`, `lines 1–2000 were`: a span as the subject of a sentence.
    fn span_was(self, first: u64, last: u64) -> String {
        let verb = if first == last { "was" } else { "were" };
        format!("{} {verb}", self.span(first, last))
    }

    /// `line 7`, `lines 1–2000`.
    fn span(self, first: u64, last: u64) -> String {
        if first == last {
            format!("{} {first}", self.unit())
        } else {
            format!("{}s {first}–{last}", self.unit())
        }
    }
}

/// One message of the input and its place: its line, or its item number (from 1).
#[derive(Debug)]
pub struct Item {
    pub at: u64,
    pub json: Box<RawValue>,
}

/// A problem with the message at a place, or (`at: None`) with a whole batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: Option<u64>,
    pub field: String,
    pub reason: String,
}

impl Problem {
    fn at(at: u64, reason: String) -> Problem {
        Problem {
            at: Some(at),
            field: String::new(),
            reason,
        }
    }

    /// `line 2501: field `timestamp`: not RFC 3339`.
    fn describe(&self, format: Format) -> String {
        let mut text = match self.at {
            Some(at) => format!("{} {at}: ", format.unit()),
            None => String::new(),
        };
        if !self.field.is_empty() {
            text.push_str(&format!("field `{}`: ", self.field));
        }
        text.push_str(&self.reason);
        text
    }
}

/// The messages of an input, with their places.
pub struct Source {
    format: Format,
    next: Box<dyn FnMut() -> Option<Result<Item, Problem>> + Send>,
}

impl Source {
    /// Reads `reader`, telling NDJSON from a JSON array by the first non-blank byte.
    pub fn new(mut reader: Box<dyn BufRead + Send>) -> std::io::Result<Source> {
        // Blank lines before the first message are consumed only when the peek
        // window holds nothing else; they still count as lines.
        let mut skipped_lines = 0;
        let format = loop {
            let buffer = reader.fill_buf()?;
            if buffer.is_empty() {
                break Format::Ndjson;
            }
            match buffer.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(i) if buffer[i] == b'[' => break Format::JsonArray,
                Some(_) => break Format::Ndjson,
                None => {
                    skipped_lines += buffer.iter().filter(|b| **b == b'\n').count() as u64;
                    let length = buffer.len();
                    reader.consume(length);
                }
            }
        };
        let next = match format {
            Format::Ndjson => ndjson_items(reader, skipped_lines),
            Format::JsonArray => array_items(reader),
        };
        Ok(Source { format, next })
    }

    /// The input's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The next message, a problem at its place, or `None` at the end.
    fn next(&mut self) -> Option<Result<Item, Problem>> {
        (self.next)()
    }

    /// The next batch of up to `size` places (messages and problems); `None` at the end.
    pub fn batch(&mut self, size: usize) -> Option<Batch> {
        let mut batch = Batch::default();
        while batch.items.len() + batch.problems.len() < size {
            let place = match self.next() {
                None => break,
                Some(Ok(item)) => {
                    let at = item.at;
                    batch.items.push(item);
                    at
                }
                Some(Err(problem)) => {
                    let at = problem.at.unwrap_or(batch.last);
                    batch.problems.push(problem);
                    at
                }
            };
            if batch.first == 0 {
                batch.first = place;
            }
            batch.last = batch.last.max(place);
        }
        (!(batch.items.is_empty() && batch.problems.is_empty())).then_some(batch)
    }
}

/// NDJSON: each non-blank line one message; a line that is not JSON is a problem at it.
fn ndjson_items(
    mut reader: Box<dyn BufRead + Send>,
    skipped_lines: u64,
) -> Box<dyn FnMut() -> Option<Result<Item, Problem>> + Send> {
    let mut line_number = skipped_lines;
    let mut done = false;
    let mut line = Vec::new();
    Box::new(move || {
        loop {
            if done {
                return None;
            }
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => return None,
                Ok(_) => line_number += 1,
                Err(err) => {
                    done = true;
                    return Some(Err(Problem::at(
                        line_number + 1,
                        format!("could not be read: {err}"),
                    )));
                }
            }
            let Ok(text) = std::str::from_utf8(&line) else {
                return Some(Err(Problem::at(line_number, "is not UTF-8".into())));
            };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            return Some(match serde_json::from_str::<Box<RawValue>>(text) {
                Ok(json) => Ok(Item {
                    at: line_number,
                    json,
                }),
                Err(err) => Err(Problem::at(
                    line_number,
                    format!("not JSON ({})", without_line(&err)),
                )),
            });
        }
    })
}

/// serde_json's message with the column but not the line (always 1 within one line).
fn without_line(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let message = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(message, _)| message);
    format!("{message} at column {}", err.column())
}

/// A JSON array: its elements streamed by a reader thread, so a file far
/// larger than memory goes through; a syntax error ends the input there.
fn array_items(
    reader: Box<dyn BufRead + Send>,
) -> Box<dyn FnMut() -> Option<Result<Item, Problem>> + Send> {
    let (sender, receiver) = mpsc::sync_channel(READ_AHEAD);
    std::thread::spawn(move || {
        let mut deserializer = serde_json::Deserializer::from_reader(reader);
        let elements = Elements {
            sender: sender.clone(),
        };
        let read = deserializer
            .deserialize_seq(elements)
            .and_then(|count| deserializer.end().map(|()| count));
        if let Err(err) = read {
            // When the receiver hung up (the load stopped) nobody hears this: fine.
            let _ = sender.send(Err(Problem {
                at: None,
                field: String::new(),
                reason: format!("invalid JSON array: {err}"),
            }));
        }
    });
    let mut count = 0;
    let mut done = false;
    Box::new(move || {
        if done {
            return None;
        }
        match receiver.recv() {
            Ok(Ok(json)) => {
                count += 1;
                Some(Ok(Item { at: count, json }))
            }
            Ok(Err(mut problem)) => {
                done = true;
                // The element being read when the array broke off.
                problem.at = Some(count + 1);
                Some(Err(problem))
            }
            Err(_) => None,
        }
    })
}

/// Sends each element of the array it visits as it is parsed.
struct Elements {
    sender: mpsc::SyncSender<Result<Box<RawValue>, Problem>>,
}

impl<'de> Visitor<'de> for Elements {
    type Value = u64;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON array of messages")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let mut count = 0;
        while let Some(element) = seq.next_element::<Box<RawValue>>()? {
            count += 1;
            if self.sender.send(Ok(element)).is_err() {
                return Err(serde::de::Error::custom("stopped"));
            }
        }
        Ok(count)
    }
}

/// Consecutive places of the input: the messages among them and the problems.
#[derive(Debug, Default)]
pub struct Batch {
    pub items: Vec<Item>,
    /// Places that are not a message (not JSON, unreadable).
    pub problems: Vec<Problem>,
    /// The first and last place covered.
    pub first: u64,
    pub last: u64,
}

impl Batch {
    /// The request body: the messages as one JSON array, in file order.
    fn body(&self) -> String {
        let mut body = String::with_capacity(
            self.items
                .iter()
                .map(|i| i.json.get().len() + 1)
                .sum::<usize>()
                + 2,
        );
        body.push('[');
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(item.json.get());
        }
        body.push(']');
        body
    }

    /// Problems reported by index into this batch's messages, placed in the file.
    pub fn place(
        &self,
        details: impl IntoIterator<Item = (Option<usize>, String, String)>,
    ) -> Vec<Problem> {
        details
            .into_iter()
            .map(|(index, field, reason)| Problem {
                at: index.and_then(|i| self.items.get(i)).map(|item| item.at),
                field,
                reason,
            })
            .collect()
    }
}

/// What has been stored so far.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub accepted: u64,
    pub duplicates: u64,
    /// The last place of the last batch stored.
    pub stored_through: Option<u64>,
}

/// Why the load stopped.
#[derive(Debug)]
pub struct Failure {
    /// What happened, naming the places of the batch.
    pub headline: String,
    pub problems: Vec<Problem>,
    /// Validation stopped counting problems: there may be more than listed.
    pub truncated: bool,
    /// The first place not stored.
    pub from: u64,
    /// Whether nothing from `from` on was stored (false: unknown, e.g. the server went away).
    pub certain: bool,
}

impl Failure {
    /// The problems, up to [`SHOWN_PROBLEMS`], then "and N more".
    fn problem_lines(&self, format: Format) -> Vec<String> {
        let mut lines: Vec<String> = self
            .problems
            .iter()
            .take(SHOWN_PROBLEMS)
            .map(|p| p.describe(format))
            .collect();
        let more = self.problems.len().saturating_sub(SHOWN_PROBLEMS);
        match (more, self.truncated) {
            (0, false) => {}
            (0, true) => lines.push("and maybe more".into()),
            (n, false) => lines.push(format!("and {n} more")),
            (n, true) => lines.push(format!("and at least {n} more")),
        }
        lines
    }
}

/// What was stored before a failure, in words.
pub fn stored_summary(format: Format, tally: &Tally, failure: &Failure) -> String {
    let stored = match tally.stored_through {
        Some(last) => format!(
            "{} stored ({} accepted, {} duplicates)",
            format.span_was(1, last),
            tally.accepted,
            tally.duplicates
        ),
        None => "nothing was stored".to_string(),
    };
    match (failure.certain, tally.stored_through) {
        (true, None) => stored,
        (true, Some(_)) => format!(
            "{stored}; nothing from {} {} on was stored",
            format.unit(),
            failure.from
        ),
        (false, known) => {
            let before = if known.is_some() {
                format!("{stored}; ")
            } else {
                String::new()
            };
            format!(
                "{before}{}s from {} on may be partly stored: re-running the same command is \
                 safe, stored messages are skipped as duplicates",
                format.unit(),
                failure.from
            )
        }
    }
}

/// Where batches go.
trait Sink {
    /// Takes a batch; what it stored is added to `tally` (maybe later, for queued writes).
    fn put(&mut self, batch: Batch, tally: &mut Tally) -> Result<(), Failure>;
    /// Waits for everything taken to be stored.
    fn flush(&mut self, tally: &mut Tally) -> Result<(), Failure>;
}

/// Batches through a server, one request each.
struct HttpSink<'a> {
    server: &'a Server,
    format: Format,
}

impl Sink for HttpSink<'_> {
    fn put(&mut self, batch: Batch, tally: &mut Tally) -> Result<(), Failure> {
        let span = self.format.span(batch.first, batch.last);
        let answer =
            self.server
                .post_bytes("/v1/messages", "application/json", batch.body().as_bytes());
        match answer {
            Ok(Ok(answer)) => {
                tally.accepted += answer["accepted"].as_u64().unwrap_or(0);
                tally.duplicates += answer["duplicates"].as_u64().unwrap_or(0);
                tally.stored_through = Some(batch.last);
                Ok(())
            }
            Ok(Err(refusal)) => {
                let problems = batch.place(
                    refusal
                        .details
                        .iter()
                        .map(|d| (d.index, d.field.clone(), d.reason.clone())),
                );
                let hint = if refusal.status == 413 {
                    "; send fewer messages at once with a smaller --batch"
                } else {
                    ""
                };
                // With details, the server's message counts items of the batch:
                // the placed problems below say it in the file's terms instead.
                let why = if problems.is_empty() {
                    refusal.describe()
                } else {
                    format!("{} {}", refusal.status, refusal.code)
                };
                Err(Failure {
                    headline: format!("the server refused {span} ({why}){hint}"),
                    truncated: problems.len() >= MAX_DETAILS,
                    problems,
                    from: batch.first,
                    certain: true,
                })
            }
            // No answer: the batch may or may not have been stored.
            Err(err) => Err(Failure {
                headline: format!("{err:#} while sending {span}"),
                problems: Vec::new(),
                truncated: false,
                from: batch.first,
                certain: false,
            }),
        }
    }

    fn flush(&mut self, _tally: &mut Tally) -> Result<(), Failure> {
        Ok(())
    }
}

/// Batches written straight into the store: validated here, queued to the
/// writer a few at a time so it folds them into one transaction and fsync.
struct DirectSink<'a> {
    app: &'a App,
    format: Format,
    /// Queued writes with the span each covers.
    pending: std::collections::VecDeque<(
        convlog_engine::store::Pending<convlog_engine::store::IngestOutcome>,
        u64,
        u64,
    )>,
}

/// Batches queued to the writer at once.
const IN_FLIGHT: usize = 8;

impl DirectSink<'_> {
    fn settle_one(&mut self, tally: &mut Tally) -> Result<(), Failure> {
        let Some((pending, first, last)) = self.pending.pop_front() else {
            return Ok(());
        };
        match pending.wait() {
            Ok(outcome) => {
                tally.accepted += outcome.accepted as u64;
                tally.duplicates += outcome.duplicates as u64;
                tally.stored_through = Some(last);
                Ok(())
            }
            Err(err) => {
                // Later batches were queued already; let them land, then say it is unknown.
                while let Some((later, _, _)) = self.pending.pop_front() {
                    if let Ok(outcome) = later.wait() {
                        tally.accepted += outcome.accepted as u64;
                        tally.duplicates += outcome.duplicates as u64;
                    }
                }
                Err(Failure {
                    headline: format!("storing {} failed: {err}", self.format.span(first, last)),
                    problems: Vec::new(),
                    truncated: false,
                    from: first,
                    certain: false,
                })
            }
        }
    }
}

impl Sink for DirectSink<'_> {
    fn put(&mut self, batch: Batch, tally: &mut Tally) -> Result<(), Failure> {
        let span = self.format.span(batch.first, batch.last);
        let was = self.format.span_was(batch.first, batch.last);
        let refused = |headline: String, problems: Vec<Problem>| Failure {
            headline,
            truncated: problems.len() >= MAX_DETAILS,
            problems,
            from: batch.first,
            certain: true,
        };
        let items: Vec<&str> = batch.items.iter().map(|item| item.json.get()).collect();
        let messages = match validate_messages(&items, &self.app.rules) {
            Ok(messages) => messages,
            Err(ValidationError::Invalid(details)) => {
                let problems =
                    batch.place(details.into_iter().map(|d| (d.index, d.field, d.reason)));
                // Everything before this batch must be in before saying what was stored.
                self.flush(tally)?;
                return Err(refused(format!("{was} refused"), problems));
            }
            Err(err) => {
                self.flush(tally)?;
                return Err(refused(format!("{was} refused: {err}"), Vec::new()));
            }
        };
        let queued = self.app.ingest_queued(messages);
        match queued {
            Ok(pending) => self.pending.push_back((pending, batch.first, batch.last)),
            Err(err) => {
                self.flush(tally)?;
                return Err(Failure {
                    headline: format!("storing {span} failed: {err}"),
                    problems: Vec::new(),
                    truncated: false,
                    from: batch.first,
                    certain: true,
                });
            }
        }
        if self.pending.len() >= IN_FLIGHT {
            self.settle_one(tally)?;
        }
        Ok(())
    }

    fn flush(&mut self, tally: &mut Tally) -> Result<(), Failure> {
        while !self.pending.is_empty() {
            self.settle_one(tally)?;
        }
        Ok(())
    }
}

/// Counts bytes read into a progress bar.
struct Counted<R> {
    inner: R,
    bar: indicatif::ProgressBar,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.bar.inc(read as u64);
        Ok(read)
    }
}

/// The input, with a progress bar: bytes of a file, places of stdin.
fn open(file: &std::path::Path) -> anyhow::Result<(Source, indicatif::ProgressBar, bool)> {
    if file.as_os_str() == "-" {
        let bar = progress_bar("ingesting", Measure::Open);
        let reader = Box::new(BufReader::with_capacity(1 << 20, std::io::stdin()));
        return Ok((Source::new(reader).context("reading stdin")?, bar, true));
    }
    let handle =
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let size = handle.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar("ingesting", Measure::Bytes);
    bar.set_length(size);
    let counted = Counted {
        inner: handle,
        bar: bar.clone(),
    };
    let reader = Box::new(BufReader::with_capacity(1 << 20, counted));
    let source = Source::new(reader).with_context(|| format!("reading {}", file.display()))?;
    Ok((source, bar, false))
}

/// Feeds every batch of `source` to `sink`.
fn load(
    source: &mut Source,
    size: usize,
    sink: &mut dyn Sink,
    bar: &indicatif::ProgressBar,
    by_place: bool,
    tally: &mut Tally,
    messages: &mut u64,
) -> Result<(), Failure> {
    let format = source.format();
    while let Some(batch) = source.batch(size) {
        *messages += batch.items.len() as u64;
        if by_place {
            bar.set_position(batch.last);
        }
        if !batch.problems.is_empty() {
            sink.flush(tally)?;
            return Err(Failure {
                headline: format!(
                    "{} not sent: not every one is a JSON message",
                    format.span_was(batch.first, batch.last)
                ),
                truncated: false,
                problems: batch.problems,
                from: batch.first,
                certain: true,
            });
        }
        sink.put(batch, tally)?;
    }
    sink.flush(tally)
}

/// `convlog ingest`.
pub fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    if args.batch == 0 {
        anyhow::bail!("--batch must be at least 1");
    }
    // The input first: a missing file is reported before anything is looked for or created.
    let (mut source, bar, by_place) = open(&args.file)?;
    let target = resolve(&args.client, Missing::Create, NEEDS_INGEST)?;
    let format = source.format();
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut messages = 0;
    let (result, via) = match target {
        Target::Server(server) => {
            eprintln!("ingesting through {}", server.base());
            let mut sink = HttpSink {
                server: &server,
                format,
            };
            let result = load(
                &mut source,
                args.batch,
                &mut sink,
                &bar,
                by_place,
                &mut tally,
                &mut messages,
            );
            (result, server.base().to_string())
        }
        Target::Direct(config) => {
            let dir = config.server.data_dir.display().to_string();
            eprintln!("ingesting into {dir}");
            let app = App::open(*config)?;
            let mut sink = DirectSink {
                app: &app,
                format,
                pending: Default::default(),
            };
            let result = load(
                &mut source,
                args.batch,
                &mut sink,
                &bar,
                by_place,
                &mut tally,
                &mut messages,
            );
            bar.finish_and_clear();
            if result.is_ok() {
                eprintln!("indexing…");
            }
            app.shutdown();
            (result, dir)
        }
    };
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let mut document = json!({
        "format": format.name(),
        "unit": format.unit(),
        "via": via,
        "accepted": tally.accepted,
        "duplicates": tally.duplicates,
        "stored_through": tally.stored_through,
        "seconds": seconds,
    });
    match result {
        Ok(()) => {
            document["ok"] = json!(true);
            document["messages"] = json!(messages);
            if args.client.json {
                print_json(&document)?;
            } else {
                eprintln!(
                    "{} stored, {} skipped in {seconds:.1}s",
                    count(tally.accepted, "message"),
                    count(tally.duplicates, "duplicate")
                );
            }
            Ok(())
        }
        Err(failure) => {
            let summary = stored_summary(format, &tally, &failure);
            if args.client.json {
                document["ok"] = json!(false);
                document["error"] = json!(failure.headline);
                document["failed_from"] = json!(failure.from);
                document["certain"] = json!(failure.certain);
                document["problems"] = failure
                    .problems
                    .iter()
                    .map(|p| json!({"at": p.at, "field": p.field, "reason": p.reason}))
                    .collect();
                print_json(&document)?;
            }
            let mut text = failure.headline.clone();
            let lines = failure.problem_lines(format);
            if !lines.is_empty() {
                text.push(':');
                for line in lines {
                    text.push_str("\n  ");
                    text.push_str(&line);
                }
            }
            text.push('\n');
            text.push_str(&summary);
            Err(anyhow::Error::msg(text))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source {
        Source::new(Box::new(std::io::Cursor::new(text.as_bytes().to_vec()))).unwrap()
    }

    fn places(source: &mut Source) -> Vec<Result<u64, Option<u64>>> {
        std::iter::from_fn(|| source.next())
            .map(|r| r.map(|item| item.at).map_err(|p| p.at))
            .collect()
    }

    #[test]
    fn ndjson_places_are_file_lines_with_blank_lines_counted() {
        let mut input = source("\n{\"id\":1}\n\n  \n{\"id\":2}\r\nnot json\n{\"id\":3}");
        assert_eq!(input.format(), Format::Ndjson);
        assert_eq!(places(&mut input), [Ok(2), Ok(5), Err(Some(6)), Ok(7)]);
    }

    #[test]
    fn a_line_that_is_not_json_is_named_with_its_column() {
        let mut input = source("{\"id\":1}\n{\"id\": }\n");
        input.next();
        let problem = input.next().unwrap().unwrap_err();
        assert_eq!(problem.at, Some(2));
        assert!(
            problem
                .reason
                .starts_with("not JSON (expected value at column 8"),
            "{problem:?}"
        );
    }

    #[test]
    fn a_json_array_is_streamed_with_item_numbers_from_one() {
        let mut input = source("  \n [ {\"id\":1},\n {\"id\":2} ,{\"id\":\n3}]\n");
        assert_eq!(input.format(), Format::JsonArray);
        let items: Vec<(u64, String)> = std::iter::from_fn(|| input.next())
            .map(|r| {
                let item = r.unwrap();
                (item.at, item.json.get().to_string())
            })
            .collect();
        assert_eq!(
            items,
            [
                (1, "{\"id\":1}".to_string()),
                (2, "{\"id\":2}".to_string()),
                (3, "{\"id\":\n3}".to_string())
            ]
        );
    }

    #[test]
    fn a_broken_json_array_ends_with_a_problem_at_the_item_being_read() {
        let mut input = source("[{\"id\":1}, {\"id\":2} {\"id\":3}]");
        assert_eq!(input.next().unwrap().unwrap().at, 1);
        assert_eq!(input.next().unwrap().unwrap().at, 2);
        let problem = input.next().unwrap().unwrap_err();
        assert_eq!(problem.at, Some(3));
        assert!(problem.reason.contains("line 1 column"), "{problem:?}");
        assert!(input.next().is_none());
    }

    #[test]
    fn batches_cover_consecutive_places_and_their_body_is_a_json_array() {
        let mut input = source("{\"a\":1}\n\n{\"a\":2}\n{\"a\":3}\n");
        let first = input.batch(2).unwrap();
        assert_eq!((first.first, first.last, first.items.len()), (1, 3, 2));
        assert_eq!(first.body(), "[{\"a\":1},{\"a\":2}]");
        let second = input.batch(2).unwrap();
        assert_eq!((second.first, second.last), (4, 4));
        assert!(input.batch(2).is_none());
    }

    #[test]
    fn problems_by_batch_index_are_placed_on_file_lines() {
        // Batch 3 of 1000 lines each, with a blank line before it: index 500 is line 2502.
        let mut text = "{}\n".repeat(2000);
        text.push('\n');
        text.push_str(&"{}\n".repeat(1000));
        let mut input = source(&text);
        input.batch(1000);
        input.batch(1000);
        let third = input.batch(1000).unwrap();
        assert_eq!((third.first, third.last), (2002, 3001));
        let placed = third.place([
            (
                Some(500),
                "timestamp".to_string(),
                "not RFC 3339".to_string(),
            ),
            (None, "body".to_string(), "too big".to_string()),
        ]);
        assert_eq!(placed[0].at, Some(2502));
        assert_eq!(
            placed[0].describe(Format::Ndjson),
            "line 2502: field `timestamp`: not RFC 3339"
        );
        assert_eq!(placed[1].describe(Format::Ndjson), "field `body`: too big");
    }

    #[test]
    fn a_failure_says_what_was_stored_before_it() {
        let tally = Tally {
            accepted: 1998,
            duplicates: 2,
            stored_through: Some(2000),
        };
        let mut failure = Failure {
            headline: String::new(),
            problems: Vec::new(),
            truncated: false,
            from: 2001,
            certain: true,
        };
        assert_eq!(
            stored_summary(Format::Ndjson, &tally, &failure),
            "lines 1–2000 were stored (1998 accepted, 2 duplicates); nothing from line 2001 on was stored"
        );
        assert_eq!(
            stored_summary(Format::JsonArray, &Tally::default(), &failure),
            "nothing was stored"
        );
        failure.certain = false;
        assert_eq!(
            stored_summary(Format::Ndjson, &Tally::default(), &failure),
            "lines from 2001 on may be partly stored: re-running the same command is safe, \
             stored messages are skipped as duplicates"
        );
        assert!(
            stored_summary(Format::JsonArray, &tally, &failure)
                .starts_with("items 1–2000 were stored (1998 accepted, 2 duplicates); items from 2001 on may be partly stored")
        );
    }

    #[test]
    fn at_most_ten_problems_are_listed_then_how_many_more() {
        let failure = Failure {
            headline: String::new(),
            problems: (1..=13).map(|at| Problem::at(at, "bad".into())).collect(),
            truncated: false,
            from: 1,
            certain: true,
        };
        let lines = failure.problem_lines(Format::JsonArray);
        assert_eq!(lines.len(), 11);
        assert_eq!(lines[0], "item 1: bad");
        assert_eq!(lines[10], "and 3 more");
    }
}
