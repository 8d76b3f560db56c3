//! What the command line shows: progress bars on a terminal, tables and
//! one-line outcomes for people, JSON for scripts.
//!
//! stdout carries only the answer (a table, or with `--json` one JSON
//! document); progress, notes and outcomes of actions go to stderr.

use convlog_engine::jobs::Progress;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// What a progress bar counts.
#[derive(Debug, Clone, Copy)]
pub enum Measure {
    /// Items of a known total (conversations, messages).
    Items,
    /// Bytes of a file of known size.
    Bytes,
    /// Lines or items of an input of unknown size (stdin).
    Open,
}

/// A progress bar on stderr when it is a terminal, a hidden one otherwise.
pub fn progress_bar(message: &'static str, measure: Measure) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let (bar, template) = match measure {
        Measure::Items => (
            indicatif::ProgressBar::new(0),
            "{msg} [{bar:40}] {pos}/{len} ({eta})",
        ),
        Measure::Bytes => (
            indicatif::ProgressBar::new(0),
            "{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})",
        ),
        Measure::Open => (indicatif::ProgressBar::no_length(), "{msg} {spinner} {pos}"),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(200));
    // Dropped on an error path too: gone before the error is printed.
    bar.with_finish(indicatif::ProgressFinish::AndClear)
}

/// Runs `work` on its own thread beside a progress bar fed from its
/// [`Progress`]; its result and the final count of processed items.
pub fn with_progress<T: Send + 'static>(
    bar: &indicatif::ProgressBar,
    work: impl FnOnce(Arc<Progress>) -> T + Send + 'static,
) -> anyhow::Result<(T, u64)> {
    let progress = Arc::new(Progress::default());
    let shared = progress.clone();
    let worker = std::thread::spawn(move || work(shared));
    while !worker.is_finished() {
        bar.set_length(progress.total.load(Relaxed));
        bar.set_position(progress.processed.load(Relaxed));
        std::thread::sleep(Duration::from_millis(100));
    }
    let result = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the work panicked"))?;
    bar.set_length(progress.total.load(Relaxed));
    bar.set_position(progress.processed.load(Relaxed));
    Ok((result, progress.processed.load(Relaxed)))
}

/// Prints one JSON document on stdout.
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints the JSON document with `--json`, the sentence for people (on stderr) otherwise.
pub fn outcome(json: bool, document: &Value, sentence: &str) -> anyhow::Result<()> {
    if json {
        print_json(document)
    } else {
        eprintln!("{sentence}");
        Ok(())
    }
}

/// A column of a [`table`].
pub struct Column {
    pub title: &'static str,
    /// Numbers align right.
    pub right: bool,
}

/// Lays out rows under column titles, two spaces apart; the last column is not padded.
pub fn table(columns: &[Column], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            rows.iter()
                .filter_map(|row| row.get(i))
                .map(|cell| cell.chars().count())
                .chain([column.title.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let titles: Vec<String> = columns.iter().map(|c| c.title.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&titles).chain(rows) {
        let mut line = String::new();
        for (i, column) in columns.iter().enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            let last = i + 1 == columns.len();
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            if column.right {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if !last {
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `1 conversation`, `2 conversations`.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_numbers_right_and_text_left() {
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
                title: "note",
                right: false,
            },
        ];
        let rows = vec![
            vec!["legacy".to_string(), "120".to_string(), "old".to_string()],
            vec!["b".to_string(), "7".to_string(), String::new()],
        ];
        assert_eq!(
            table(&columns, &rows),
            "bot     conversations  note\n\
             legacy            120  old\n\
             b                   7\n"
        );
    }

    #[test]
    fn counts_take_the_plural_except_for_one() {
        assert_eq!(count(1, "run"), "1 run");
        assert_eq!(count(0, "run"), "0 runs");
        assert_eq!(count(12, "conversation"), "12 conversations");
    }
}
