//! The best hits of a search: positions in the result order and the few best kept.

use std::cmp::Ordering;

/// A position in the result order: documents sort by `key` then `id`, both descending.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SortPosition {
    pub key: f64,
    pub id: u64,
}

impl SortPosition {
    /// Descending order: `Less` means `self` comes first.
    pub fn order(&self, other: &SortPosition) -> Ordering {
        other
            .key
            .total_cmp(&self.key)
            .then_with(|| other.id.cmp(&self.id))
    }
}

/// The best `limit` positions seen, kept without a heap: documents arrive
/// roughly oldest first, so in newest-first order nearly every one beats the
/// worst kept and a heap would sift for each. Candidates go into a buffer that
/// is cut back to the best `limit` by selection when it fills, and the worst
/// kept then becomes the bar the next candidates must pass.
pub struct Top {
    limit: usize,
    kept: Vec<SortPosition>,
    /// The worst of the best `limit` at the last cut.
    bar: Option<SortPosition>,
}

impl Top {
    pub fn new(limit: usize) -> Top {
        Top {
            limit,
            kept: Vec::with_capacity(Top::capacity(limit)),
            bar: None,
        }
    }

    fn capacity(limit: usize) -> usize {
        (limit * 8).max(256)
    }

    /// Whether a document whose sort key is `key` can't be among the best.
    pub fn below_bar(&self, key: f64) -> bool {
        self.bar.is_some_and(|bar| key < bar.key)
    }

    pub fn push(&mut self, position: SortPosition) {
        if self
            .bar
            .is_some_and(|bar| bar.order(&position) != Ordering::Greater)
        {
            return;
        }
        self.kept.push(position);
        if self.kept.len() >= Top::capacity(self.limit) {
            self.cut();
            self.bar = self.kept.last().copied();
        }
    }

    /// Keeps the best `limit`, best first.
    fn cut(&mut self) {
        if self.kept.len() > self.limit {
            self.kept
                .select_nth_unstable_by(self.limit - 1, |a, b| a.order(b));
            self.kept.truncate(self.limit);
        }
        self.kept.sort_by(|a, b| a.order(b));
    }

    pub fn into_best(mut self) -> Vec<SortPosition> {
        self.cut();
        self.kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_newest_first_then_by_id() {
        let a = SortPosition { key: 10.0, id: 1 };
        let b = SortPosition { key: 5.0, id: 9 };
        let c = SortPosition { key: 5.0, id: 3 };
        let mut all = vec![c, a, b];
        all.sort_by(|x, y| x.order(y));
        assert_eq!(all, vec![a, b, c]);
    }

    #[test]
    fn top_keeps_the_best_limit_whatever_the_arrival_order() {
        for limit in [1, 3, 21] {
            // Oldest first (every one beats the last), newest first, and mixed.
            let orders: [Vec<u64>; 3] = [
                (0..2000).collect(),
                (0..2000).rev().collect(),
                (0..2000).map(|i| (i * 7919) % 2000).collect(),
            ];
            for order in orders {
                let mut top = Top::new(limit);
                for i in order {
                    // Ties on the key are broken by id.
                    top.push(SortPosition {
                        key: (i / 2) as f64,
                        id: i,
                    });
                }
                let best: Vec<u64> = top.into_best().iter().map(|p| p.id).collect();
                let wanted: Vec<u64> = (0..2000).rev().take(limit).collect();
                assert_eq!(best, wanted, "limit {limit}");
            }
        }
    }
}
