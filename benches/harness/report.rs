//! The result table (Markdown, so it can go straight into docs/benchmarks.md) and its JSON twin.

use serde_json::{Value, json};
use std::process::Command;

/// How a figure compares with its bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Miss,
    /// No bar: shown for context.
    Info,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Miss => "**miss**",
            Verdict::Info => "",
        }
    }

    /// The word used in the JSON file.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Miss => "miss",
            Verdict::Info => "info",
        }
    }
}

/// How a row's numbers are shown.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// Whole numbers with thousands separators, joined by " / ".
    Count,
    /// Milliseconds with this many decimals, joined by " / ".
    Ms(usize),
    /// Seconds with two decimals; NaN means "never".
    Seconds,
    /// MiB without decimals, joined by " / ".
    MiB,
    /// Percentages without decimals, joined by " / ".
    Percent,
    /// p50 / p99 ms and a rate in queries per second.
    MsRate,
    /// Free text (not aggregated over runs: the last run's).
    Text(String),
}

/// A bar: `values[index]` must be at most (or at least) `limit`.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    pub index: usize,
    pub at_most: bool,
    pub limit: f64,
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub workload: String,
    pub figure: String,
    pub bar: String,
    pub values: Vec<f64>,
    pub shape: Shape,
    pub check: Option<Check>,
    /// More machine-readable detail for the JSON file.
    pub data: Value,
}

impl Row {
    /// A row with numbers and no bar.
    pub fn info(workload: &str, figure: &str, values: Vec<f64>, shape: Shape) -> Row {
        Row {
            workload: workload.to_string(),
            figure: figure.to_string(),
            bar: String::new(),
            values,
            shape,
            check: None,
            data: Value::Null,
        }
    }

    /// A row of text.
    pub fn text(workload: &str, figure: &str, text: String) -> Row {
        Row::info(workload, figure, Vec::new(), Shape::Text(text))
    }

    /// Adds a bar.
    pub fn bar(mut self, bar: &str, check: Check) -> Row {
        self.bar = bar.to_string();
        self.check = Some(check);
        self
    }

    /// Adds JSON detail.
    pub fn with_data(mut self, data: Value) -> Row {
        self.data = data;
        self
    }

    /// The figure as shown.
    pub fn value_text(&self) -> String {
        let join = |f: &dyn Fn(f64) -> String| -> String {
            self.values
                .iter()
                .map(|v| f(*v))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        match &self.shape {
            Shape::Count => join(&|v| thousands(v.round().max(0.0) as u64)),
            Shape::Ms(decimals) => format!("{} ms", join(&|v| format!("{v:.decimals$}"))),
            Shape::Seconds => join(&|v| {
                if v.is_finite() {
                    format!("{v:.2} s")
                } else {
                    "never".to_string()
                }
            }),
            Shape::MiB => format!(
                "{} MiB",
                join(&|v| if v < 100.0 {
                    format!("{v:.1}")
                } else {
                    format!("{v:.0}")
                })
            ),
            Shape::Percent => join(&|v| format!("{v:.0}%")),
            Shape::MsRate => match self.values.as_slice() {
                [p50, p99, rate] => format!("{p50:.1} / {p99:.1} ms, {rate:.0} q/s"),
                _ => String::new(),
            },
            Shape::Text(text) => text.clone(),
        }
    }

    /// Pass or miss against the bar; `Info` without one.
    pub fn verdict(&self) -> Verdict {
        let Some(check) = self.check else {
            return Verdict::Info;
        };
        let value = self.values.get(check.index).copied().unwrap_or(f64::NAN);
        let ok = if check.at_most {
            value <= check.limit
        } else {
            value >= check.limit
        };
        if ok { Verdict::Pass } else { Verdict::Miss }
    }

    /// JSON form.
    pub fn to_json(&self) -> Value {
        json!({
            "workload": self.workload, "figure": self.figure, "value": self.value_text(),
            "values": self.values.iter().map(|v| if v.is_finite() { json!(v) } else { Value::Null }).collect::<Vec<_>>(),
            "bar": self.bar, "verdict": self.verdict().word(), "data": self.data,
        })
    }
}

/// Rows of several runs combined: each number is the median over the runs
/// (NaN, "never", counts as worst); text comes from the last run.
pub fn median_rows(runs: &[Vec<Row>]) -> Vec<Row> {
    let Some(last) = runs.last() else {
        return Vec::new();
    };
    last.iter()
        .map(|row| {
            let same: Vec<&Row> = runs
                .iter()
                .filter_map(|rows| {
                    rows.iter()
                        .find(|r| r.workload == row.workload && r.figure == row.figure)
                })
                .collect();
            let mut median = row.clone();
            median.data = Value::Null;
            for (i, value) in median.values.iter_mut().enumerate() {
                let mut all: Vec<f64> = same
                    .iter()
                    .filter_map(|r| r.values.get(i).copied())
                    .map(|v| if v.is_nan() { f64::INFINITY } else { v })
                    .collect();
                all.sort_by(f64::total_cmp);
                *value = match all.len() {
                    0 => f64::NAN,
                    n if n % 2 == 1 => all[n / 2],
                    n => (all[n / 2 - 1] + all[n / 2]) / 2.0,
                };
            }
            median
        })
        .collect()
}

/// The spread of a row's first figure over runs, e.g. "min 88,000, max 99,000".
pub fn spread(runs: &[Vec<Row>], row: &Row, index: usize) -> Option<(f64, f64)> {
    let values: Vec<f64> = runs
        .iter()
        .filter_map(|rows| {
            rows.iter()
                .find(|r| r.workload == row.workload && r.figure == row.figure)
        })
        .filter_map(|r| r.values.get(index).copied())
        .collect();
    if values.len() < 2 {
        return None;
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((min, max))
}

/// Where and with what the run happened.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub rustc: String,
    pub kernel: String,
    pub commit: String,
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl Machine {
    /// Reads `lscpu`, /proc/meminfo, `rustc --version`, `uname -r` and the git commit.
    pub fn detect() -> Machine {
        let cpu = command_output("lscpu", &[])
            .and_then(|text| {
                text.lines().find_map(|line| {
                    line.strip_prefix("Model name:")
                        .map(|m| m.trim().to_string())
                })
            })
            .unwrap_or_else(|| "unknown".into());
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|line| line.strip_prefix("MemTotal:"))
                    .and_then(|rest| {
                        rest.trim()
                            .trim_end_matches("kB")
                            .trim()
                            .parse::<f64>()
                            .ok()
                    })
            })
            .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
        let commit = command_output("git", &["rev-parse", "--short", "HEAD"])
            .map(|commit| {
                // Local changes are named by a digest of the diff, so runs of one tree can be matched.
                match command_output("git", &["diff", "HEAD"]) {
                    Some(diff) if !diff.is_empty() => {
                        use sha2::Digest;
                        let digest = sha2::Sha256::digest(diff.as_bytes());
                        let short: String =
                            digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
                        format!("{commit} + local changes (diff {short})")
                    }
                    _ => commit,
                }
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib,
            rustc: command_output("rustc", &["--version"]).unwrap_or_else(|| "unknown".into()),
            kernel: command_output("uname", &["-r"]).unwrap_or_else(|| "unknown".into()),
            commit,
        }
    }

    /// JSON form.
    pub fn to_json(&self) -> Value {
        json!({
            "cpu": self.cpu, "cores": self.cores, "memory_gib": (self.memory_gib * 10.0).round() / 10.0,
            "rustc": self.rustc, "kernel": self.kernel, "commit": self.commit,
        })
    }
}

/// The Markdown table.
pub fn table(rows: &[Row]) -> String {
    let header = ["workload", "figure", "convlog", "bar (2 cores)", "peer", ""];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.workload.clone(),
                r.figure.clone(),
                r.value_text(),
                r.bar.clone(),
                if r.bar.is_empty() {
                    String::new()
                } else {
                    "not yet measured".into()
                },
                r.verdict().label().to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell}{}", " ".repeat(width - cell.chars().count())))
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    let mut out = String::new();
    out.push_str(&line(&header.map(str::to_string)));
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&line(&rule));
    out.push('\n');
    for row in &cells {
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// An integer with thousands separators: 1234567 → "1,234,567".
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
