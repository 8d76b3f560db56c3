//! Session assignment: which conversation a message belongs to.
//!
//! A session is a maximal run of one user's messages on one channel in which no
//! gap is longer than the channel's timeout. Assignment must not depend on the
//! order messages arrive in, so a batch's messages are swept together with the
//! sessions already stored: a late message can extend a session, start one in a
//! gap, or bridge two sessions, which then merge.

use convlog_core::Micros;

/// A stored session of the same user and channel near the new messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSession {
    pub id: u64,
    pub started_at: Micros,
    pub last_message_at: Micros,
}

/// One resulting session: the stored sessions it absorbs and the new messages it receives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionGroup {
    /// Ids of stored sessions in this group, ascending; more than one means they merge.
    pub stored: Vec<u64>,
    /// Positions (in the caller's slice) of the new messages in this group.
    pub messages: Vec<usize>,
}

/// Groups new message timestamps with stored sessions so no gap inside a group exceeds `timeout`.
///
/// `stored` must hold every stored session that ends at or after
/// `min(timestamps) - timeout` and starts at or before `max(timestamps) + timeout`.
pub fn group_sessions(
    stored: &[StoredSession],
    timestamps: &[Micros],
    timeout: Micros,
) -> Vec<SessionGroup> {
    enum Item {
        Stored(u64),
        Message(usize),
    }
    let mut items: Vec<(Micros, Micros, Item)> = stored
        .iter()
        .map(|s| (s.started_at, s.last_message_at, Item::Stored(s.id)))
        .chain(
            timestamps
                .iter()
                .enumerate()
                .map(|(position, &ts)| (ts, ts, Item::Message(position))),
        )
        .collect();
    items.sort_by_key(|(start, end, _)| (*start, *end));

    let mut groups: Vec<SessionGroup> = Vec::new();
    let mut group_end = Micros::MIN;
    for (start, end, item) in items {
        let gap = start.saturating_sub(group_end);
        if groups.is_empty() || gap > timeout {
            groups.push(SessionGroup::default());
            group_end = end;
        } else {
            group_end = group_end.max(end);
        }
        let group = groups.last_mut().expect("a group was pushed");
        match item {
            Item::Stored(id) => group.stored.push(id),
            Item::Message(position) => group.messages.push(position),
        }
    }
    groups.retain(|group| !group.messages.is_empty());
    for group in &mut groups {
        group.stored.sort_unstable();
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: Micros = 60_000_000;

    fn stored(id: u64, start: Micros, last: Micros) -> StoredSession {
        StoredSession {
            id,
            started_at: start,
            last_message_at: last,
        }
    }

    #[test]
    fn message_within_timeout_joins_the_stored_session() {
        let groups = group_sessions(&[stored(1, 0, 10 * MIN)], &[40 * MIN], 30 * MIN);
        assert_eq!(
            groups,
            vec![SessionGroup {
                stored: vec![1],
                messages: vec![0]
            }]
        );
    }

    #[test]
    fn gap_longer_than_timeout_starts_a_new_session() {
        let groups = group_sessions(&[stored(1, 0, 10 * MIN)], &[41 * MIN], 30 * MIN);
        assert_eq!(
            groups,
            vec![SessionGroup {
                stored: vec![],
                messages: vec![0]
            }]
        );
    }

    #[test]
    fn late_message_in_the_gap_bridges_two_sessions() {
        let sessions = [stored(1, 0, 10 * MIN), stored(2, 60 * MIN, 70 * MIN)];
        let groups = group_sessions(&sessions, &[35 * MIN], 30 * MIN);
        assert_eq!(
            groups,
            vec![SessionGroup {
                stored: vec![1, 2],
                messages: vec![0]
            }]
        );
    }

    #[test]
    fn messages_before_a_session_extend_it_backwards() {
        let groups = group_sessions(
            &[stored(7, 100 * MIN, 110 * MIN)],
            &[80 * MIN, 50 * MIN],
            30 * MIN,
        );
        assert_eq!(
            groups,
            vec![SessionGroup {
                stored: vec![7],
                messages: vec![1, 0]
            }]
        );
    }

    /// The reference: sort everything, split where a gap exceeds the timeout.
    fn split_by_gaps(mut timestamps: Vec<Micros>, timeout: Micros) -> Vec<Vec<Micros>> {
        timestamps.sort_unstable();
        let mut sessions: Vec<Vec<Micros>> = Vec::new();
        for ts in timestamps {
            match sessions.last_mut() {
                Some(last) if ts - *last.last().unwrap() <= timeout => last.push(ts),
                _ => sessions.push(vec![ts]),
            }
        }
        sessions
    }

    proptest! {
        /// Ingesting in any batches and order gives the sessions a one-shot sort would.
        #[test]
        fn batches_in_any_order_give_the_same_sessions(
            times in proptest::collection::vec(0i64..500, 1..60),
            batch_size in 1usize..10,
        ) {
            let timeout = 30;
            let mut sessions: Vec<(u64, Vec<Micros>)> = Vec::new();
            let mut next_id = 1;
            for batch in times.chunks(batch_size) {
                let lo = batch.iter().min().unwrap() - timeout;
                let hi = batch.iter().max().unwrap() + timeout;
                let nearby: Vec<StoredSession> = sessions
                    .iter()
                    .filter(|(_, ts)| *ts.iter().max().unwrap() >= lo && *ts.iter().min().unwrap() <= hi)
                    .map(|(id, ts)| stored(*id, *ts.iter().min().unwrap(), *ts.iter().max().unwrap()))
                    .collect();
                for group in group_sessions(&nearby, batch, timeout) {
                    let mut merged: Vec<Micros> = group.messages.iter().map(|&i| batch[i]).collect();
                    let target = match group.stored.first() {
                        Some(&id) => id,
                        None => { next_id += 1; next_id }
                    };
                    sessions.retain(|(id, ts)| {
                        if group.stored.contains(id) { merged.extend(ts); false } else { true }
                    });
                    sessions.push((target, merged));
                }
            }
            let mut got: Vec<Vec<Micros>> = sessions.into_iter().map(|(_, mut ts)| { ts.sort_unstable(); ts }).collect();
            got.sort();
            prop_assert_eq!(got, split_by_gaps(times, timeout));
        }
    }
}
