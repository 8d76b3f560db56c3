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
    /// A factor: "12×".
    Times,
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

/// The peers' columns, in order, with their short names for the ratio column.
pub const PEERS: [(&str, &str); 3] = [
    ("PostgreSQL", "PG"),
    ("SQLite FTS5", "SQLite"),
    ("DuckDB", "DuckDB"),
];

/// How convlog compares with the peers on a row: `values[index]` against each peer's.
#[derive(Debug, Clone, Copy)]
pub struct Ratio {
    pub index: usize,
    /// Throughput (ours ÷ theirs) rather than latency (theirs ÷ ours): above 1 is convlog ahead either way.
    pub higher_is_better: bool,
    /// The bar on every peer's ratio, if any.
    pub at_least: Option<f64>,
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
    /// Each peer's figures (same shape as `values`), in the order of [`PEERS`].
    pub peers: [Option<Vec<f64>>; 3],
    pub ratio: Option<Ratio>,
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
            peers: [None, None, None],
            ratio: None,
            data: Value::Null,
        }
    }

    /// Adds a peer's figures (`peer` indexes [`PEERS`]).
    pub fn peer(mut self, peer: usize, values: Vec<f64>) -> Row {
        self.peers[peer] = Some(values);
        self
    }

    /// Compares `values[index]` with the peers'; `at_least` is the bar on every ratio.
    pub fn ratio(mut self, index: usize, higher_is_better: bool, at_least: Option<f64>) -> Row {
        self.ratio = Some(Ratio {
            index,
            higher_is_better,
            at_least,
        });
        self
    }

    /// Each peer's ratio (above 1: convlog ahead).
    pub fn ratios(&self) -> Vec<(usize, f64)> {
        let Some(ratio) = self.ratio else {
            return Vec::new();
        };
        let ours = self.values.get(ratio.index).copied().unwrap_or(f64::NAN);
        self.peers
            .iter()
            .enumerate()
            .filter_map(|(i, values)| {
                let theirs = values.as_ref()?.get(ratio.index).copied()?;
                Some((
                    i,
                    if ratio.higher_is_better {
                        ours / theirs
                    } else {
                        theirs / ours
                    },
                ))
            })
            .collect()
    }

    /// The ratio column's text.
    pub fn ratio_text(&self) -> String {
        self.ratios()
            .iter()
            .map(|(i, r)| format!("{} {}×", PEERS[*i].1, ratio_number(*r)))
            .collect::<Vec<_>>()
            .join(" · ")
    }

    /// A peer's figures as shown.
    pub fn peer_text(&self, peer: usize) -> String {
        match &self.peers[peer] {
            Some(values) => Row {
                values: values.clone(),
                ..Row::info("", "", Vec::new(), self.shape.clone())
            }
            .value_text(),
            None => String::new(),
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
            Shape::Count => join(&|v| {
                if v.is_finite() {
                    thousands(v.round().max(0.0) as u64)
                } else {
                    "–".to_string()
                }
            }),
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
            Shape::Times => join(&|v| format!("{}×", ratio_number(v))),
            Shape::MsRate => match self.values.as_slice() {
                [p50, p99, rate] => format!("{p50:.1} / {p99:.1} ms, {rate:.0} q/s"),
                _ => String::new(),
            },
            Shape::Text(text) => text.clone(),
        }
    }

    /// Pass or miss against the bar (and the bar on the peers' ratios); `Info` without one.
    pub fn verdict(&self) -> Verdict {
        let mut verdict = Verdict::Info;
        if let Some(check) = self.check {
            let value = self.values.get(check.index).copied().unwrap_or(f64::NAN);
            let ok = if check.at_most {
                value <= check.limit
            } else {
                value >= check.limit
            };
            verdict = if ok { Verdict::Pass } else { Verdict::Miss };
        }
        if let Some(at_least) = self.ratio.and_then(|r| r.at_least) {
            let ratios = self.ratios();
            if !ratios.is_empty() {
                if ratios.iter().any(|(_, r)| r.is_nan() || *r < at_least) {
                    verdict = Verdict::Miss;
                } else if verdict == Verdict::Info {
                    verdict = Verdict::Pass;
                }
            }
        }
        verdict
    }

    /// JSON form.
    pub fn to_json(&self) -> Value {
        json!({
            "workload": self.workload, "figure": self.figure, "value": self.value_text(),
            "values": self.values.iter().map(|v| if v.is_finite() { json!(v) } else { Value::Null }).collect::<Vec<_>>(),
            "bar": self.bar, "verdict": self.verdict().word(), "data": self.data,
            "peers": PEERS.iter().zip(&self.peers).filter_map(|((name, _), values)| {
                Some((name.to_string(), json!(values.as_ref()?.iter().map(|v| if v.is_finite() { json!(v) } else { Value::Null }).collect::<Vec<_>>())))
            }).collect::<serde_json::Map<_, _>>(),
            "ratios": self.ratios().iter().map(|(i, r)| (PEERS[*i].0.to_string(), json!(if r.is_finite() { json!(r) } else { Value::Null }))).collect::<serde_json::Map<_, _>>(),
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
            let middle = |all: Vec<f64>| -> f64 {
                let mut all: Vec<f64> = all
                    .into_iter()
                    .map(|v| if v.is_nan() { f64::INFINITY } else { v })
                    .collect();
                all.sort_by(f64::total_cmp);
                match all.len() {
                    0 => f64::NAN,
                    n if n % 2 == 1 => all[n / 2],
                    n => (all[n / 2 - 1] + all[n / 2]) / 2.0,
                }
            };
            for (i, value) in median.values.iter_mut().enumerate() {
                *value = middle(
                    same.iter()
                        .filter_map(|r| r.values.get(i).copied())
                        .collect(),
                );
            }
            for peer in 0..PEERS.len() {
                if let Some(values) = &mut median.peers[peer] {
                    for (i, value) in values.iter_mut().enumerate() {
                        *value = middle(
                            same.iter()
                                .filter_map(|r| r.peers[peer].as_ref()?.get(i).copied())
                                .collect(),
                        );
                    }
                }
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

/// A ratio as shown: two significant digits or so.
pub fn ratio_number(r: f64) -> String {
    if !r.is_finite() {
        "–".into()
    } else if r >= 10.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.2}")
    }
}

/// The Markdown table: convlog's figure, each peer's, the ratios, the bar.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "workload",
        "figure",
        "convlog",
        PEERS[0].0,
        PEERS[1].0,
        PEERS[2].0,
        "peer ÷ convlog (>1: convlog ahead)",
        "bar (2 cores)",
        "",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.workload.clone(),
                r.figure.clone(),
                r.value_text(),
                r.peer_text(0),
                r.peer_text(1),
                r.peer_text(2),
                r.ratio_text(),
                r.bar.clone(),
                r.verdict().label().to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
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
