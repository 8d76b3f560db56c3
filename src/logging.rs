//! The server's log on stderr: text for people or JSON for a pipeline
//! (`log.format`), verbosity from `CONVLOG_LOG` (default `info`).

use convlog_engine::settings::LogFormat;
use std::io::IsTerminal;

/// Installs the log for the rest of the process (once; later calls do nothing).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONVLOG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        // Colours only for a person at a terminal: a file or a pipe gets plain text.
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        // One object per line: timestamp, level, target and the event's fields.
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}
