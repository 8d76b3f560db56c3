//! Test-only crash injection: `CONVLOG_FAILPOINTS=archive.after_write@2,…`
//! aborts the process (like `kill -9`) right after that step is recorded, at
//! its n-th pass (first when no `@n`). The points: `archive.after_*` (each
//! step of an archive pass), `bulk.after_chunk` (each chunk of a bulk action).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The failpoints of a process.
#[derive(Debug, Clone, Default)]
pub(crate) struct Failpoints(Arc<HashMap<String, (u64, std::sync::atomic::AtomicU64)>>);

impl Failpoints {
    /// The failpoints `CONVLOG_FAILPOINTS` names.
    pub(crate) fn from_env() -> Failpoints {
        let spec = std::env::var("CONVLOG_FAILPOINTS").unwrap_or_default();
        let points = spec
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|point| {
                let (name, nth) = point.split_once('@').unwrap_or((point, "1"));
                let nth = nth.parse().unwrap_or(1);
                (
                    name.to_string(),
                    (nth, std::sync::atomic::AtomicU64::new(0)),
                )
            })
            .collect();
        Failpoints(Arc::new(points))
    }

    /// Aborts the process if this is the named point's n-th pass.
    pub(crate) fn hit(&self, name: &str) {
        if let Some((nth, passes)) = self.0.get(name)
            && passes.fetch_add(1, Ordering::SeqCst) + 1 == *nth
        {
            eprintln!("failpoint {name}: aborting");
            std::process::abort();
        }
    }
}
