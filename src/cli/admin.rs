//! Admin commands: `reindex`, `retag`, `archive`, `restore`, `jobs` — each
//! through a server (start the job, follow it on a progress bar, report its
//! `result`) or directly on the data directory (the same work, on this process).

use super::client::{Missing, Target, resolve};
use super::output::{
    Column, Measure, count, outcome, print_json, progress_bar, table, with_progress,
};
use super::{ArchiveArgs, ClientArgs, EraseArgs, RestoreArgs};
use crate::app::{self, App};
use anyhow::bail;
use serde_json::{Value, json};
use std::time::Instant;

/// What the admin commands need of a key, said when a server answers 403.
const NEEDS_ADMIN: &str =
    "this command needs an admin key for all bots (`convlog keys create --role admin --bots '*'`)";

/// A count of a finished job: from its `result`, or (a server without
/// results) its `processed`.
fn job_count(job: &Value, field: &str) -> u64 {
    job["result"][field]
        .as_u64()
        .or_else(|| job["processed"].as_u64())
        .unwrap_or(0)
}

/// `job: <id>` beside a result, so a script can look the job up.
fn with_job(mut document: Value, job: Option<&Value>) -> Value {
    if let (Some(object), Some(job)) = (document.as_object_mut(), job) {
        object.insert("job".into(), job["id"].clone());
    }
    document
}

/// `convlog reindex`.
pub fn reindex(args: ClientArgs) -> anyhow::Result<()> {
    conversation_job(
        args,
        "reindexing",
        "/v1/admin/reindex",
        "reindexed",
        |mut config| {
            // This is the remedy `on_schema_change = "refuse"` names: open whatever is there.
            config.index.on_schema_change = convlog_engine::index::SchemaChange::Rebuild;
            let app = App::open(config)?;
            let index = app.index.clone();
            Ok((app, Box::new(move |progress| index.reindex(&progress))))
        },
    )
}

/// `convlog retag`.
pub fn retag(args: ClientArgs) -> anyhow::Result<()> {
    conversation_job(
        args,
        "re-tagging",
        "/v1/admin/tagging",
        "re-tagged",
        |config| {
            let app = App::open(config)?;
            let tagger = app.tagger.clone();
            // Shutting down afterwards indexes the tags written.
            Ok((app, Box::new(move |progress| tagger.full_run(progress))))
        },
    )
}

/// The work of a job over every hot conversation, on this process.
type DirectWork =
    Box<dyn FnOnce(std::sync::Arc<convlog_engine::jobs::Progress>) -> Result<(), String> + Send>;

/// A job over every hot conversation (reindex, retag): started through the
/// server's `path` and followed, or `open`ed and run on the data directory;
/// reported as "`done` N conversations".
fn conversation_job(
    args: ClientArgs,
    label: &'static str,
    path: &str,
    done: &str,
    open: impl FnOnce(convlog_engine::config::Config) -> anyhow::Result<(App, DirectWork)>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let bar = progress_bar(label, Measure::Items);
    let (conversations, job) = match resolve(&args, Missing::Refuse, NEEDS_ADMIN)? {
        Target::Server(server) => {
            let job = server.post(path, None)?;
            let job = server.follow(job, &bar)?;
            (job_count(&job, "conversations"), Some(job))
        }
        Target::Direct(config) => {
            let (app, work) = open(*config)?;
            let (result, processed) = with_progress(&bar, work)?;
            app.shutdown();
            result.map_err(anyhow::Error::msg)?;
            (processed, None)
        }
    };
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    outcome(
        args.json,
        &with_job(
            json!({"conversations": conversations, "seconds": seconds}),
            job.as_ref(),
        ),
        &format!(
            "{done} {} in {seconds:.1}s",
            count(conversations, "conversation")
        ),
    )
}

/// `convlog archive [--dry-run]`.
pub fn archive(args: ArchiveArgs) -> anyhow::Result<()> {
    let target = resolve(&args.client, Missing::Refuse, NEEDS_ADMIN)?;
    if args.dry_run {
        let plan = match target {
            Target::Server(server) => {
                server.post("/v1/admin/archive?dry_run=true", None)?["plan"].clone()
            }
            Target::Direct(config) => {
                let app = App::open(*config)?;
                let plan = app.archiver.dry_run();
                app.shutdown();
                serde_json::to_value(plan?)?
            }
        };
        return if args.client.json {
            print_json(&plan)
        } else {
            print!("{}", plan_table(&plan));
            Ok(())
        };
    }
    let bar = progress_bar("archiving", Measure::Items);
    let (summary, job) = match target {
        Target::Server(server) => {
            let job = server.post("/v1/admin/archive", None)?;
            let job = server.follow(job, &bar)?;
            // A server without job results: what the progress says.
            let summary = match &job["result"] {
                Value::Null => json!({"messages": job["processed"]}),
                result => result.clone(),
            };
            (summary, Some(job))
        }
        Target::Direct(config) => {
            let app = App::open(*config)?;
            let archiver = app.archiver.clone();
            let (summary, _) = with_progress(&bar, move |progress| archiver.run(&progress))?;
            app.shutdown();
            (serde_json::to_value(summary?)?, None)
        }
    };
    bar.finish_and_clear();
    outcome(
        args.client.json,
        &with_job(summary.clone(), job.as_ref()),
        &archive_sentence(&summary),
    )
}

/// The dry run for people: a row per bot, and the total.
fn plan_table(plan: &Value) -> String {
    let number = |value: &Value| value.as_u64().unwrap_or(0).to_string();
    let mut rows: Vec<Vec<String>> = plan["bots"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(bot, due)| vec![bot.clone(), number(&due[0]), number(&due[1])])
        .collect();
    let mut out = if rows.is_empty() {
        "nothing is due for archiving\n".to_string()
    } else {
        rows.push(vec![
            "total".into(),
            number(&plan["conversations"]),
            number(&plan["messages"]),
        ]);
        let columns = [
            Column {
                title: "bot",
                right: false,
            },
            Column {
                title: "conversations",
                right: true,
            },
            Column {
                title: "messages due",
                right: true,
            },
        ];
        table(&columns, &rows)
    };
    if let Some(resumed) = plan["resumed"].as_u64().filter(|n| *n > 0) {
        out.push_str(&format!(
            "{} interrupted before will be finished first\n",
            count(resumed, "archive run")
        ));
    }
    out
}

/// What an archive pass did, in words.
fn archive_sentence(summary: &Value) -> String {
    let number = |field: &str| summary[field].as_u64().unwrap_or(0);
    let mut sentence = if number("conversations") == 0 && number("messages") == 0 {
        "nothing was due for archiving".to_string()
    } else {
        format!(
            "archived {} ({}) in {}",
            count(number("conversations"), "conversation"),
            count(number("messages"), "message"),
            count(number("runs"), "run")
        )
    };
    for (field, what) in [
        ("resumed", "finished an interrupted run"),
        (
            "restores_expired",
            "dropped restored conversations whose hold ended",
        ),
        ("orphans_removed", "removed objects no manifest names"),
    ] {
        if number(field) > 0 {
            sentence.push_str(&format!("; {what}: {}", number(field)));
        }
    }
    sentence
}

/// `convlog restore`.
pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let now = convlog_core::now_micros();
    let time = |flag: &str, text: &str| {
        convlog_core::parse_time(text, now).map_err(|reason| anyhow::anyhow!("{flag} {reason}"))
    };
    let (from, to) = (time("--from", &args.from)?, time("--to", &args.to)?);
    let (from_text, to_text) = (
        convlog_core::format_timestamp(from),
        convlog_core::format_timestamp(to),
    );
    if from >= to {
        bail!("--to must be after --from");
    }
    let bar = progress_bar("restoring", Measure::Items);
    let (summary, job) = match resolve(&args.client, Missing::Refuse, NEEDS_ADMIN)? {
        Target::Server(server) => {
            let body = json!({"bot_id": args.bot_id, "from": from_text, "to": to_text});
            let job = server.post("/v1/admin/restore", Some(&body))?;
            let job = server.follow(job, &bar)?;
            let summary = match &job["result"] {
                Value::Null => json!({"conversations": job["processed"]}),
                result => result.clone(),
            };
            (summary, Some(job))
        }
        Target::Direct(config) => {
            let app = App::open(*config)?;
            let archiver = app.archiver.clone();
            let bot_id = args.bot_id.clone();
            let (summary, _) = with_progress(&bar, move |progress| {
                archiver.restore(&bot_id, from, to, &progress)
            })?;
            app.shutdown();
            (serde_json::to_value(summary?)?, None)
        }
    };
    bar.finish_and_clear();
    let number = |field: &str| summary[field].as_u64().unwrap_or(0);
    let (restored, hot) = (number("conversations"), number("already_hot"));
    if restored == 0 && hot == 0 {
        bail!(
            "nothing archived for bot {:?} in [{from_text}, {to_text})",
            args.bot_id,
        );
    }
    let mut sentence = format!(
        "restored {} ({}) of bot {:?} in [{from_text}, {to_text})",
        count(restored, "conversation"),
        count(number("messages"), "message"),
        args.bot_id,
    );
    if hot > 0 {
        sentence.push_str(&format!(
            "; {} were hot already",
            count(hot, "conversation")
        ));
    }
    if let Some(until) = summary["hold_until"].as_str() {
        sentence.push_str(&format!("; searchable (read-only) until {until}"));
    }
    outcome(
        args.client.json,
        &with_job(summary.clone(), job.as_ref()),
        &sentence,
    )
}

/// `convlog jobs`.
pub fn jobs(args: ClientArgs) -> anyhow::Result<()> {
    let list = match resolve(&args, Missing::Refuse, NEEDS_ADMIN)? {
        Target::Server(server) => server.get("/v1/admin/jobs")?["jobs"].clone(),
        Target::Direct(config) => {
            let _lock = app::lock_data_dir(&config)?;
            let store =
                convlog_engine::store::Store::open(&config.server.data_dir.join("convlog.db"))?;
            let jobs =
                convlog_engine::jobs::Jobs::open(store.clone(), convlog_core::Clock::default())?;
            let list = tokio::runtime::Builder::new_current_thread()
                .build()?
                .block_on(jobs.list(100));
            store.shutdown();
            Value::Array(
                list?
                    .iter()
                    .map(convlog_engine::jobs::JobRecord::to_json)
                    .collect(),
            )
        }
    };
    if args.json {
        return print_json(&json!({"jobs": list}));
    }
    let text = |value: &Value| value.as_str().unwrap_or("").to_string();
    let rows: Vec<Vec<String>> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|job| {
            vec![
                text(&job["id"]),
                text(&job["kind"]),
                text(&job["state"]),
                format!("{}/{}", job["processed"], job["total"]),
                text(&job["started_at"]),
                job_outcome(job),
            ]
        })
        .collect();
    let columns = [
        Column {
            title: "id",
            right: false,
        },
        Column {
            title: "kind",
            right: false,
        },
        Column {
            title: "state",
            right: false,
        },
        Column {
            title: "processed/total",
            right: true,
        },
        Column {
            title: "started",
            right: false,
        },
        Column {
            title: "result or error",
            right: false,
        },
    ];
    print!("{}", table(&columns, &rows));
    if rows.is_empty() {
        eprintln!("no jobs yet");
    }
    Ok(())
}

/// The error of a failed job, or what a finished one did, in a few words.
fn job_outcome(job: &Value) -> String {
    if let Some(error) = job["error"].as_str() {
        return error.to_string();
    }
    let result = &job["result"];
    if result.is_null() {
        return String::new();
    }
    let number = |field: &str| result[field].as_u64().unwrap_or(0);
    match job["kind"].as_str() {
        Some("archive") => format!(
            "archived {} ({})",
            count(number("conversations"), "conversation"),
            count(number("messages"), "message")
        ),
        Some("restore") => format!(
            "restored {}",
            count(number("conversations"), "conversation")
        ),
        Some("reindex") => format!("indexed {}", count(number("conversations"), "conversation")),
        Some("tagging") => format!("tagged {}", count(number("conversations"), "conversation")),
        _ => result.to_string(),
    }
}

/// `convlog erase --bot B --user U`.
pub fn erase(args: EraseArgs) -> anyhow::Result<()> {
    if !convlog_core::is_identifier(&args.bot_id) {
        bail!("--bot must match [A-Za-z0-9._-]{{1,64}}");
    }
    if args.user_id.trim().is_empty() || args.user_id.chars().count() > 256 {
        bail!("--user must be a non-blank id of at most 256 characters");
    }
    let bar = progress_bar("erasing", Measure::Items);
    let (summary, job) = match resolve(&args.client, Missing::Refuse, NEEDS_ADMIN)? {
        Target::Server(server) => {
            let body = json!({"bot_id": args.bot_id, "user_id": args.user_id});
            let job = server.post("/v1/admin/erase", Some(&body))?;
            let job = server.follow(job, &bar)?;
            (job["result"].clone(), Some(job))
        }
        Target::Direct(config) => {
            let app = App::open(*config)?;
            let id = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(app.plan_erasure(
                    args.bot_id.clone(),
                    &args.user_id,
                    None,
                    "cli".to_string(),
                ))?;
            let archiver = app.archiver.clone();
            let (summary, _) = with_progress(&bar, move |progress| archiver.erase(id, &progress))?;
            app.shutdown();
            (serde_json::to_value(summary?)?, None)
        }
    };
    bar.finish_and_clear();
    let number = |field: &str| summary[field].as_u64().unwrap_or(0);
    let sentence = format!(
        "erased {} ({}) of the user from bot {:?}; {} rewritten without their {}",
        count(number("conversations"), "conversation"),
        count(number("messages"), "message"),
        args.bot_id,
        count(number("archive_objects"), "archive object"),
        count(number("archive_rows"), "row"),
    );
    outcome(
        args.client.json,
        &with_job(summary.clone(), job.as_ref()),
        &sentence,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dry_run_table_names_each_bot_with_its_counts_and_a_total() {
        let plan = json!({"runs": 1, "conversations": 5, "messages": 40, "resumed": 0,
                          "bots": {"legacy": [3, 30], "old": [2, 10]}});
        assert_eq!(
            plan_table(&plan),
            "bot     conversations  messages due\n\
             legacy              3            30\n\
             old                 2            10\n\
             total               5            40\n"
        );
        assert_eq!(
            plan_table(&json!({"bots": {}, "resumed": 1})),
            "nothing is due for archiving\n1 archive run interrupted before will be finished first\n"
        );
    }

    #[test]
    fn an_archive_pass_is_told_with_its_counts() {
        let summary = json!({"runs": 2, "conversations": 5, "messages": 40, "resumed": 1});
        assert_eq!(
            archive_sentence(&summary),
            "archived 5 conversations (40 messages) in 2 runs; finished an interrupted run: 1"
        );
        assert_eq!(
            archive_sentence(&json!({"runs": 0})),
            "nothing was due for archiving"
        );
    }

    #[test]
    fn job_counts_fall_back_to_progress_without_a_result() {
        let with = json!({"processed": 9, "result": {"conversations": 7}});
        let without = json!({"processed": 9, "result": null});
        assert_eq!(job_count(&with, "conversations"), 7);
        assert_eq!(job_count(&without, "conversations"), 9);
    }
}
