//! What archive passes did since the process started, for `/metrics`.

use crate::store::archive::RunState;
use convlog_core::Micros;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A step of an archive pass, as failures are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Choosing what is due and holding it (also resuming, expiring restores).
    Plan,
    /// Reading, encoding and uploading a run's objects.
    Write,
    /// Reading every object back.
    Verify,
    /// Putting a run's objects into the manifest.
    Manifest,
    /// Deleting a run's rows from the store.
    Delete,
    /// Waiting for the index to commit the deletions.
    Index,
    /// Removing objects the manifest doesn't know.
    Orphans,
}

impl Step {
    /// Every step, in discriminant order.
    pub const ALL: [Step; 7] = [
        Step::Plan,
        Step::Write,
        Step::Verify,
        Step::Manifest,
        Step::Delete,
        Step::Index,
        Step::Orphans,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Plan => "plan",
            Step::Write => "write",
            Step::Verify => "verify",
            Step::Manifest => "manifest",
            Step::Delete => "delete",
            Step::Index => "index",
            Step::Orphans => "orphans",
        }
    }

    /// The step that takes a run on from `state`.
    pub fn after(state: RunState) -> Step {
        match state {
            RunState::Planned => Step::Write,
            RunState::Written => Step::Verify,
            RunState::Verified => Step::Manifest,
            RunState::Manifested => Step::Delete,
            RunState::Deleted | RunState::Done | RunState::RolledBack => Step::Index,
        }
    }
}

/// Counters of archive passes (see [`Step`]).
#[derive(Debug)]
pub struct ArchiveStats {
    /// When the last pass succeeded; the process's start until one has.
    pub last_success: AtomicI64,
    pub passes_succeeded: AtomicU64,
    pub passes_failed: AtomicU64,
    /// Rows (messages and conversations), bytes and objects uploaded.
    pub rows: AtomicU64,
    pub bytes: AtomicU64,
    pub objects: AtomicU64,
    pub orphans_removed: AtomicU64,
    /// Failures by [`Step`] (its discriminant).
    pub failures: [AtomicU64; Step::ALL.len()],
}

impl ArchiveStats {
    pub fn new(started: Micros) -> ArchiveStats {
        ArchiveStats {
            last_success: AtomicI64::new(started),
            passes_succeeded: AtomicU64::default(),
            passes_failed: AtomicU64::default(),
            rows: AtomicU64::default(),
            bytes: AtomicU64::default(),
            objects: AtomicU64::default(),
            orphans_removed: AtomicU64::default(),
            failures: Default::default(),
        }
    }

    /// Counts a failure of `step`.
    pub fn failed(&self, step: Step) {
        self.failures[step as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Failures per step.
    pub fn failures(&self) -> Vec<(&'static str, u64)> {
        Step::ALL
            .iter()
            .map(|step| {
                (
                    step.as_str(),
                    self.failures[*step as usize].load(Ordering::Relaxed),
                )
            })
            .collect()
    }
}
