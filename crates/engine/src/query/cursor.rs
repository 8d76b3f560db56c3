//! Cursors that visit every match exactly once, even while the index changes.
//!
//! The first page pins a point-in-time view of the index (an [`IndexView`]:
//! its tantivy `Searcher`s keep their segments alive) and the cursor names it, together with the last
//! position returned. Later pages search the same view, so sort keys can't move
//! under the cursor. A view that expired or was evicted falls back to the live
//! index, keyed on the same position.

use super::QueryError;
use super::build::TimeRange;
use super::collector::SortPosition;
use crate::index::IndexView;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a cursor carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The pinned view.
    pub view: u64,
    pub after: SortPosition,
    pub range: TimeRange,
    /// Fingerprint of the filters the cursor was made for.
    pub filters: u64,
}

impl Cursor {
    /// The opaque text form.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("cursor serialises"))
    }

    /// Reads a cursor, refusing anything that is not one of ours.
    pub fn decode(text: &str) -> Result<Cursor, QueryError> {
        let bad = || QueryError::InvalidParameter {
            name: "cursor".into(),
            reason: "not a cursor returned by this server".into(),
        };
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        serde_json::from_slice(&bytes).map_err(|_| bad())
    }
}

/// Pinned index views, by id, dropped after a time to live or when too many are open.
pub struct Views {
    views: Mutex<HashMap<u64, (Arc<IndexView>, Instant)>>,
    next: AtomicU64,
    ttl: Duration,
    max: usize,
}

impl Views {
    /// An empty set.
    pub fn new(ttl: Duration, max: usize) -> Views {
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        Views {
            views: Mutex::new(HashMap::new()),
            next: AtomicU64::new(u64::from_le_bytes(seed) >> 16),
            ttl,
            max,
        }
    }

    /// Pins `view`, returning its id.
    pub fn pin(&self, view: Arc<IndexView>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut views = self.views.lock().expect("views lock");
        views.retain(|_, (_, used)| now.duration_since(*used) < self.ttl);
        while views.len() >= self.max.max(1) {
            let oldest = views
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| *id)
                .expect("non-empty");
            views.remove(&oldest);
        }
        views.insert(id, (view, now));
        id
    }

    /// The pinned view `id`, if still open.
    pub fn get(&self, id: u64) -> Option<Arc<IndexView>> {
        let now = Instant::now();
        let mut views = self.views.lock().expect("views lock");
        match views.get_mut(&id) {
            Some((view, used)) if now.duration_since(*used) < self.ttl => {
                *used = now;
                Some(view.clone())
            }
            Some(_) => {
                views.remove(&id);
                None
            }
            None => None,
        }
    }

    /// How many views are open.
    pub fn len(&self) -> usize {
        self.views.lock().expect("views lock").len()
    }

    /// Whether no view is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor {
            view: 7,
            // A BM25 score: f32 widened to f64 must survive the text form to the last bit.
            after: SortPosition {
                key: 3.377_743_2_f32 as f64,
                id: 9,
            },
            range: TimeRange {
                from: Some(1),
                to: None,
            },
            filters: 42,
        };
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        assert!(Cursor::decode("not-a-cursor").is_err());
        assert!(Cursor::decode("").is_err());
    }
}
