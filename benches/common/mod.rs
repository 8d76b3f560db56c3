//! Shared by the benches that measure a job on data already stored (`tagging`,
//! `archive`): loading generated data through the library, and medians.

use convlog::app::App;
use convlog_engine::ingest::validate::validate_messages;
use convlog_gen::{GenConfig, generate};

/// Generates with `generator` and ingests the first `messages` messages in
/// batches of 10,000 (validated as the HTTP path would); returns how many were stored.
pub fn load(app: &App, generator: &GenConfig, messages: usize) -> anyhow::Result<u64> {
    let mut batch: Vec<String> = Vec::with_capacity(10_000);
    let (mut loaded, mut count) = (0u64, 0usize);
    let mut failure: Option<anyhow::Error> = None;
    let mut flush = |batch: &mut Vec<String>| -> anyhow::Result<()> {
        let items = std::mem::take(batch);
        let items: Vec<&str> = items.iter().map(String::as_str).collect();
        let valid = validate_messages(&items, &app.rules)
            .map_err(|err| anyhow::anyhow!("generated data is invalid: {err:?}"))?;
        loaded += app.ingest_blocking(valid)?.accepted as u64;
        Ok(())
    };
    generate(generator, |message| {
        if count >= messages || failure.is_some() {
            return;
        }
        count += 1;
        batch.push(serde_json::to_string(&message).expect("messages serialise"));
        if batch.len() == 10_000
            && let Err(err) = flush(&mut batch)
        {
            failure = Some(err);
        }
    });
    if let Some(err) = failure {
        return Err(err);
    }
    if !batch.is_empty() {
        flush(&mut batch)?;
    }
    Ok(loaded)
}

/// The median (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}
