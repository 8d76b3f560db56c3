//! The messages live tails are about to send, read once for all of them.
//!
//! Each open tail says how far it has read. While one is open, the indexer
//! hands every message it writes that a tail has yet to read (it has just
//! read it from the store, whole) to [`Recent`] before it makes the commit
//! searchable, so a tail woken by that commit finds the messages its search
//! matched here. What isn't here (a tail resuming from an old
//! `Last-Event-ID`, messages handed over while [`Recent`] was full) is read
//! from the store by the first tail that needs it and kept for the others.
//! A message every tail has read past is dropped; with no tail open nothing
//! is kept. When full, the newest go first: the tails that are behind (they
//! yield to ingest during a burst) read what comes next from here.

use crate::store::ChangedConversation;
use crate::store::read::MessageRecord;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Most messages kept (about 1 KiB each with their rendering).
const KEPT: usize = 50_000;

/// A message as tails send it: one copy for every tail that sends it.
#[derive(Debug)]
pub struct Tailed {
    pub bot_id: String,
    pub message: MessageRecord,
    /// Its conversation's channel.
    pub channel: String,
    rendered: OnceLock<Box<str>>,
}

impl Tailed {
    pub fn new(bot_id: &str, message: MessageRecord, channel: String) -> Tailed {
        Tailed {
            bot_id: bot_id.to_string(),
            message,
            channel,
            rendered: OnceLock::new(),
        }
    }

    /// The message as the reader sends it, made by `render` for the first
    /// tail that sends it and reused by the others.
    pub fn rendered(&self, render: impl FnOnce(&Tailed) -> String) -> &str {
        self.rendered.get_or_init(|| render(self).into_boxed_str())
    }
}

/// What open tails share: how far each has read, the messages they have
/// yet to send by store sequence, and how long they yielded to ingest.
#[derive(Debug, Default)]
pub struct Recent {
    /// How far each open tail has read.
    tails: Mutex<Vec<Arc<AtomicU64>>>,
    messages: Mutex<BTreeMap<u64, Arc<Tailed>>>,
    /// Microseconds tails waited for an ingest burst to pass, since start.
    yielded: AtomicU64,
}

/// An open tail; while one is held, [`Recent`] keeps what it hasn't read.
pub struct Following {
    recent: Arc<Recent>,
    read: Arc<AtomicU64>,
}

impl Following {
    /// The tail has read everything up to sequence `seq`.
    pub fn read_to(&self, seq: u64) {
        self.read.store(seq, Ordering::Release);
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let mut tails = self.recent.tails.lock().expect("tails");
        tails.retain(|read| !Arc::ptr_eq(read, &self.read));
        if tails.is_empty() {
            self.recent.lock().clear();
        }
    }
}

impl Recent {
    /// Counts an open tail, which sends the messages after `after`, until
    /// the guard is dropped.
    pub fn follow(self: &Arc<Recent>, after: u64) -> Following {
        let read = Arc::new(AtomicU64::new(after));
        self.tails.lock().expect("tails").push(read.clone());
        Following {
            recent: self.clone(),
            read,
        }
    }

    /// Tails open now.
    pub fn open(&self) -> usize {
        self.tails.lock().expect("tails").len()
    }

    /// Counts time a tail waited for an ingest burst to pass.
    pub fn yielded(&self, waited: std::time::Duration) {
        self.yielded
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
    }

    /// Seconds tails waited for ingest bursts to pass, since start.
    pub fn yielded_seconds(&self) -> f64 {
        self.yielded.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// The sequence every open tail has read to; `None` with no tail open.
    fn floor(&self) -> Option<u64> {
        let tails = self.tails.lock().expect("tails");
        tails.iter().map(|read| read.load(Ordering::Acquire)).min()
    }

    /// The indexer's hand-over of a page it wrote: its messages some tail
    /// has yet to read, the oldest first while there is room. One kept as it
    /// is stays (a conversation tagged since comes with messages handed over
    /// before); one that changed (its conversation merged into another) is
    /// replaced.
    pub fn hand_over(&self, changed: &[ChangedConversation]) {
        let Some(floor) = self.floor() else {
            return;
        };
        let new: Vec<Tailed> = {
            let kept = self.lock();
            let mut wanted: Vec<(&ChangedConversation, &MessageRecord)> = changed
                .iter()
                .flat_map(|changed| changed.messages.iter().map(move |m| (changed, m)))
                .filter(|(changed, message)| {
                    message.seq > floor
                        && !kept.get(&message.seq).is_some_and(|tailed| {
                            tailed.message == **message && tailed.channel == changed.record.channel
                        })
                })
                .collect();
            wanted.sort_unstable_by_key(|(_, message)| message.seq);
            wanted.truncate(KEPT.saturating_sub(kept.len()));
            wanted
                .into_iter()
                .map(|(changed, message)| {
                    let record = &changed.record;
                    Tailed::new(&record.bot_id, message.clone(), record.channel.clone())
                })
                .collect()
        };
        if !new.is_empty() {
            self.keep(new);
        }
    }

    /// The kept messages with these sequences, and the sequences not kept.
    pub fn get(&self, seqs: &[u64]) -> (Vec<Arc<Tailed>>, Vec<u64>) {
        let kept = self.lock();
        let (mut found, mut missing) = (Vec::with_capacity(seqs.len()), Vec::new());
        for seq in seqs {
            match kept.get(seq) {
                Some(tailed) => found.push(tailed.clone()),
                None => missing.push(*seq),
            }
        }
        (found, missing)
    }

    /// Keeps `messages` (as read now: they replace what was kept), then
    /// drops what every tail has read and, beyond the bound, the newest. The
    /// lock is only held for that: the indexer, which hands messages over,
    /// never waits for a tail's read.
    pub fn keep(&self, messages: Vec<Tailed>) -> Vec<Arc<Tailed>> {
        let floor = self.floor();
        let mut kept = self.lock();
        let mut out = Vec::with_capacity(messages.len());
        for tailed in messages {
            let tailed = Arc::new(tailed);
            kept.insert(tailed.message.seq, tailed.clone());
            out.push(tailed);
        }
        if let Some(floor) = floor {
            *kept = kept.split_off(&(floor + 1));
        }
        while kept.len() > KEPT {
            kept.pop_last();
        }
        out
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<Tailed>>> {
        self.messages.lock().expect("recent messages")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::read::ConversationRecord;

    fn page(channel: &str, seqs: impl IntoIterator<Item = u64>) -> Vec<ChangedConversation> {
        let record = ConversationRecord {
            id: 1,
            bot_id: "shop".into(),
            channel: channel.into(),
            ..ConversationRecord::default()
        };
        let messages = seqs
            .into_iter()
            .map(|seq| MessageRecord {
                seq,
                text: format!("message {seq}"),
                ..MessageRecord::default()
            })
            .collect();
        vec![ChangedConversation {
            record,
            placed_at: 0,
            messages,
        }]
    }

    fn kept(recent: &Recent) -> Vec<u64> {
        recent.lock().keys().copied().collect()
    }

    #[test]
    fn nothing_is_kept_without_an_open_tail() {
        let recent = Arc::new(Recent::default());
        recent.hand_over(&page("web", 1..=10));
        assert!(kept(&recent).is_empty());
        let tail = recent.follow(0);
        assert_eq!(recent.open(), 1);
        recent.hand_over(&page("web", 1..=3));
        assert_eq!(kept(&recent), vec![1, 2, 3]);
        drop(tail);
        assert_eq!(recent.open(), 0);
        assert!(kept(&recent).is_empty(), "the last tail closing empties it");
    }

    #[test]
    fn only_what_a_tail_has_yet_to_read_is_kept() {
        let recent = Arc::new(Recent::default());
        let slow = recent.follow(10);
        let fast = recent.follow(15);
        recent.hand_over(&page("web", 5..=20));
        assert_eq!(kept(&recent), (11..=20).collect::<Vec<_>>());
        // A conversation handed over again keeps the copy tails already
        // share, unless its messages changed.
        let before = recent.get(&[12]).0[0].clone();
        recent.hand_over(&page("web", 5..=20));
        let (found, missing) = recent.get(&[12, 21]);
        assert!(Arc::ptr_eq(&found[0], &before));
        assert_eq!(missing, vec![21]);
        let mut merged = page("web", 12..=12);
        merged[0].messages[0].conversation_id = 7;
        recent.hand_over(&merged);
        assert_eq!(recent.get(&[12]).0[0].message.conversation_id, 7);
        // Once every tail has read past a message, it goes.
        slow.read_to(18);
        fast.read_to(19);
        recent.keep(vec![Tailed::new(
            "shop",
            MessageRecord::default(),
            "web".into(),
        )]);
        assert_eq!(kept(&recent), vec![19, 20]);
    }

    #[test]
    fn when_full_the_newest_go_first() {
        let recent = Arc::new(Recent::default());
        let _tail = recent.follow(0);
        let total = KEPT as u64 + 100;
        recent.hand_over(&page("web", 1..=total));
        let kept = kept(&recent);
        assert_eq!(kept.len(), KEPT);
        assert_eq!(kept.last(), Some(&(KEPT as u64)));
        // What the tails read from the store is kept too, the newest dropped.
        let read = vec![Tailed::new(
            "shop",
            MessageRecord {
                seq: total + 5,
                ..MessageRecord::default()
            },
            "web".into(),
        )];
        assert_eq!(recent.keep(read).len(), 1);
        assert_eq!(self::kept(&recent).len(), KEPT);
    }
}
