//! The tagging rules' pure cores: what each rule finds in one conversation's
//! messages, with the messages that triggered it and a reason a reviewer can
//! read.
//!
//! It is pure: no IO and no clock (the caller passes `now` and the channel's
//! session timeout in [`ConversationFacts`]), so the job can run it on any
//! thread and tests can pin every input.
//!
//! The built-in rules are named, given their parameters and dispatched by the
//! registry (`builtin.rs`); this file holds what they compute and knows nothing
//! of configuration.
//!
//! The tagging job must keep up with millions of messages per second, so
//! [`Conversation::new`] makes one pass over the messages that gathers what every rule
//! needs (`Scan`), plus one pass for the rules that read texts (keywords,
//! repeated user texts) only when such a rule is configured. Messages are
//! visited again only to list the ids of a tag that fires. Apart from those ids,
//! nothing is allocated per message: texts are hashed and tokenized in place or
//! into one reused buffer.
//!
//! Messages must be given in conversation order: by timestamp, ties in ingest
//! order (by `seq`), as the store returns them. "Last" below means last in that
//! order.
//!
//! Choices the contract leaves open:
//! - `agent_handoff` lists the first agent message only: that is where the
//!   hand-off happened.
//! - `unidentified` counts on a message of any role: the flag belongs to
//!   whichever side the bot runtime put it on.
//! - Threshold rules list the message that gave the measure for
//!   `min_confidence` (the first user message with the lowest confidence) and
//!   `max_gap_minutes` (the message after the longest silence; none for a
//!   single message), and no messages for the counts and the duration.
//! - An empty conversation earns no tag.

use crate::store::MessageRecord;
use convlog_core::Micros;
use std::cell::OnceCell;

/// What a rule needs to know about a conversation besides its messages.
#[derive(Debug, Clone, Copy)]
pub struct ConversationFacts {
    /// The time of evaluation.
    pub now: Micros,
    /// The session timeout of the conversation's channel.
    pub session_timeout: Micros,
}

/// A rule that fired, before it is named: the messages that triggered it and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    /// The messages that triggered it, in conversation order.
    pub message_ids: Vec<String>,
    /// Why, in words, e.g. "3 unidentified responses in a row".
    pub reason: String,
}

/// One conversation as the rules read it: its messages (in order), its facts,
/// and what one pass over the messages found, shared by every rule.
pub struct Conversation<'a> {
    messages: &'a [MessageRecord],
    facts: ConversationFacts,
    scan: Scan,
    /// Built by the first rule that reads repeated texts, if any does.
    user_texts: OnceCell<UserTexts>,
}

impl<'a> Conversation<'a> {
    /// Scans `messages` (in conversation order) once.
    pub fn new(messages: &'a [MessageRecord], facts: ConversationFacts) -> Conversation<'a> {
        Conversation {
            messages,
            facts,
            scan: Scan::new(messages),
            user_texts: OnceCell::new(),
        }
    }

    /// `unidentified_response`: every message with `unidentified: true`.
    pub fn unidentified_response(&self) -> Option<Fired> {
        unidentified_response(&self.scan, self.messages)
    }

    /// `repeated_unidentified`: runs of at least `n` unidentified messages.
    pub fn repeated_unidentified(&self, n: usize) -> Option<Fired> {
        repeated_unidentified(&self.scan, self.messages, n)
    }

    /// `dropoff`: the last message with a flow doesn't complete it.
    pub fn dropoff(&self) -> Option<Fired> {
        dropoff(&self.scan, self.messages)
    }

    /// `agent_handoff`: the first agent message.
    pub fn agent_handoff(&self) -> Option<Fired> {
        agent_handoff(&self.scan, self.messages)
    }

    /// `low_confidence`: user messages with a confidence below `threshold`.
    pub fn low_confidence(&self, threshold: f64) -> Option<Fired> {
        low_confidence(&self.scan, self.messages, threshold)
    }

    /// `user_repeated`: user texts sent at least `n` times.
    pub fn user_repeated(&self, n: usize) -> Option<Fired> {
        let texts = self
            .user_texts
            .get_or_init(|| UserTexts::new(self.messages));
        user_repeated(texts, self.messages, n)
    }

    /// `no_bot_reply`: the last message is the user's and the session has ended.
    pub fn no_bot_reply(&self) -> Option<Fired> {
        no_bot_reply(self.messages, self.facts)
    }

    /// `long_conversation`: more than `max_messages` messages.
    pub fn long_conversation(&self, max_messages: usize) -> Option<Fired> {
        long_conversation(self.messages, max_messages)
    }

    /// A threshold rule: `metric op value` holds.
    pub fn threshold(&self, metric: Metric, op: Op, value: f64) -> Option<Fired> {
        threshold(&self.scan, self.messages, metric, op, value)
    }
}

/// A measure of a whole conversation that a threshold rule compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Number of messages.
    MessageCount,
    /// Number of messages with role `user`.
    UserMessages,
    /// Number of messages with role `bot`.
    BotMessages,
    /// Number of messages with `unidentified: true`.
    UnidentifiedCount,
    /// Minutes from the first message to the last.
    DurationMinutes,
    /// Lowest confidence of a user message; a conversation without one has no value.
    MinConfidence,
    /// Longest silence between two consecutive messages, in minutes (0 for one message).
    MaxGapMinutes,
}

impl Metric {
    /// Every metric, in documentation order.
    pub const ALL: [Metric; 7] = [
        Metric::MessageCount,
        Metric::UserMessages,
        Metric::BotMessages,
        Metric::UnidentifiedCount,
        Metric::DurationMinutes,
        Metric::MinConfidence,
        Metric::MaxGapMinutes,
    ];

    /// The name used in `config.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::MessageCount => "message_count",
            Metric::UserMessages => "user_messages",
            Metric::BotMessages => "bot_messages",
            Metric::UnidentifiedCount => "unidentified_count",
            Metric::DurationMinutes => "duration_minutes",
            Metric::MinConfidence => "min_confidence",
            Metric::MaxGapMinutes => "max_gap_minutes",
        }
    }

    /// The metric of that name, if there is one.
    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|metric| metric.name() == name)
    }
}

/// A comparison of a threshold rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `==`.
    Eq,
}

impl Op {
    /// Every comparison.
    pub const ALL: [Op; 5] = [Op::Gt, Op::Ge, Op::Lt, Op::Le, Op::Eq];

    /// The symbol used in `config.toml`.
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
        }
    }

    /// The comparison written as `symbol`, if there is one.
    pub fn parse(symbol: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.symbol() == symbol)
    }

    /// Whether `left op right` holds.
    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Op::Gt => left > right,
            Op::Ge => left >= right,
            Op::Lt => left < right,
            Op::Le => left <= right,
            Op::Eq => left == right,
        }
    }
}

/// The word tokens of `text`: maximal runs of alphanumeric chars, lowercased char by char.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Tokens::default();
    tokens.fill(text);
    (0..tokens.spans.len())
        .map(|i| String::from_utf8_lossy(tokens.get(i)).into_owned())
        .collect()
}

/// A run of unidentified messages not broken by an identified bot message.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// Index of the first unidentified message.
    start: usize,
    /// One past the index of the last unidentified message.
    end: usize,
    /// Unidentified messages in `start..end`.
    count: usize,
}

/// What one pass over the messages learns, enough for every rule that doesn't read texts.
struct Scan {
    user: usize,
    bot: usize,
    unidentified: usize,
    agents: usize,
    first_agent: Option<usize>,
    last_flow: Option<usize>,
    /// The lowest confidence of a user message, and the first message with it.
    min_user_confidence: Option<(f64, usize)>,
    min_timestamp: Micros,
    max_timestamp: Micros,
    /// The longest gap between consecutive messages, and the message after it.
    max_gap: Option<(Micros, usize)>,
    /// Only allocated when a message is unidentified, which most conversations aren't.
    runs: Vec<Run>,
}

impl Scan {
    fn new(messages: &[MessageRecord]) -> Scan {
        let mut scan = Scan {
            user: 0,
            bot: 0,
            unidentified: 0,
            agents: 0,
            first_agent: None,
            last_flow: None,
            min_user_confidence: None,
            min_timestamp: Micros::MAX,
            max_timestamp: Micros::MIN,
            max_gap: None,
            runs: Vec::new(),
        };
        let mut run: Option<Run> = None;
        let mut previous: Option<Micros> = None;
        for (i, message) in messages.iter().enumerate() {
            let is_bot = match message.role.as_str() {
                "user" => {
                    scan.user += 1;
                    // NaN can't pass ingest; skipping it keeps `min` meaningful anyway.
                    if let Some(confidence) = message.confidence.filter(|c| !c.is_nan()) {
                        // Strictly lower keeps the first of equal minima.
                        if scan
                            .min_user_confidence
                            .is_none_or(|(min, _)| confidence < min)
                        {
                            scan.min_user_confidence = Some((confidence, i));
                        }
                    }
                    false
                }
                "bot" => {
                    scan.bot += 1;
                    true
                }
                "agent" => {
                    scan.agents += 1;
                    scan.first_agent.get_or_insert(i);
                    false
                }
                _ => false,
            };
            if message.unidentified {
                scan.unidentified += 1;
                match &mut run {
                    Some(run) => {
                        run.end = i + 1;
                        run.count += 1;
                    }
                    None => {
                        run = Some(Run {
                            start: i,
                            end: i + 1,
                            count: 1,
                        })
                    }
                }
            } else if is_bot && let Some(ended) = run.take() {
                scan.runs.push(ended);
            }
            if message.flow.is_some() {
                scan.last_flow = Some(i);
            }
            scan.min_timestamp = scan.min_timestamp.min(message.timestamp);
            scan.max_timestamp = scan.max_timestamp.max(message.timestamp);
            if let Some(previous) = previous {
                let gap = message.timestamp.saturating_sub(previous);
                if scan.max_gap.is_none_or(|(max, _)| gap > max) {
                    scan.max_gap = Some((gap, i));
                }
            }
            previous = Some(message.timestamp);
        }
        scan.runs.extend(run);
        scan
    }

    /// The value of `metric` (none when it has none) and the message it points at, if any.
    fn measure(&self, metric: Metric, len: usize) -> (Option<f64>, Option<usize>) {
        const MINUTE: f64 = 60_000_000.0;
        match metric {
            Metric::MessageCount => (Some(len as f64), None),
            Metric::UserMessages => (Some(self.user as f64), None),
            Metric::BotMessages => (Some(self.bot as f64), None),
            Metric::UnidentifiedCount => (Some(self.unidentified as f64), None),
            Metric::DurationMinutes => (
                Some(self.max_timestamp.saturating_sub(self.min_timestamp) as f64 / MINUTE),
                None,
            ),
            Metric::MinConfidence => match self.min_user_confidence {
                Some((confidence, i)) => (Some(confidence), Some(i)),
                None => (None, None),
            },
            Metric::MaxGapMinutes => match self.max_gap {
                Some((gap, i)) => (Some(gap as f64 / MINUTE), Some(i)),
                None => (Some(0.0), None),
            },
        }
    }
}

fn ids<'a>(messages: impl IntoIterator<Item = &'a MessageRecord>) -> Vec<String> {
    messages.into_iter().map(|m| m.id.clone()).collect()
}

fn unidentified_response(scan: &Scan, messages: &[MessageRecord]) -> Option<Fired> {
    if scan.unidentified == 0 {
        return None;
    }
    Some(Fired {
        message_ids: ids(messages.iter().filter(|m| m.unidentified)),
        reason: plural(scan.unidentified, "unidentified response"),
    })
}

fn repeated_unidentified(scan: &Scan, messages: &[MessageRecord], n: usize) -> Option<Fired> {
    let qualifying = || scan.runs.iter().filter(|run| run.count >= n);
    let longest = qualifying().map(|run| run.count).max()?;
    let message_ids = ids(qualifying().flat_map(|run| {
        messages[run.start..run.end]
            .iter()
            .filter(|m| m.unidentified)
    }));
    let mut reason = format!("{} in a row", plural(longest, "unidentified response"));
    let runs = qualifying().count();
    if runs > 1 {
        reason.push_str(&format!(", {runs} times"));
    }
    Some(Fired {
        message_ids,
        reason,
    })
}

fn dropoff(scan: &Scan, messages: &[MessageRecord]) -> Option<Fired> {
    let last = &messages[scan.last_flow?];
    if last.flow_completed {
        return None;
    }
    let flow = last.flow.as_deref().unwrap_or_default();
    let reason = match &last.step {
        Some(step) => format!("dropped off in flow {flow} at step {step}"),
        None => format!("dropped off in flow {flow}"),
    };
    Some(Fired {
        message_ids: vec![last.id.clone()],
        reason,
    })
}

fn agent_handoff(scan: &Scan, messages: &[MessageRecord]) -> Option<Fired> {
    let first = &messages[scan.first_agent?];
    Some(Fired {
        message_ids: vec![first.id.clone()],
        reason: format!(
            "handed off to an agent ({})",
            plural(scan.agents, "agent message")
        ),
    })
}

fn low_confidence(scan: &Scan, messages: &[MessageRecord], threshold: f64) -> Option<Fired> {
    let (lowest, _) = scan.min_user_confidence?;
    if lowest >= threshold {
        return None;
    }
    let message_ids = ids(messages
        .iter()
        .filter(|m| m.role == "user" && m.confidence.is_some_and(|c| c < threshold)));
    let reason = if message_ids.len() == 1 {
        format!("confidence {} below {}", number(lowest), number(threshold))
    } else {
        format!(
            "{} user messages with confidence below {}, lowest {}",
            message_ids.len(),
            number(threshold),
            number(lowest)
        )
    };
    Some(Fired {
        message_ids,
        reason,
    })
}

fn threshold(
    scan: &Scan,
    messages: &[MessageRecord],
    metric: Metric,
    op: Op,
    value: f64,
) -> Option<Fired> {
    let (measure, message) = scan.measure(metric, messages.len());
    let measure = measure.filter(|&measure| op.holds(measure, value))?;
    Some(Fired {
        message_ids: message
            .map(|i| messages[i].id.clone())
            .into_iter()
            .collect(),
        reason: format!(
            "{} {} {} {}",
            metric.name(),
            number(measure),
            op.symbol(),
            number(value)
        ),
    })
}

fn no_bot_reply(messages: &[MessageRecord], facts: ConversationFacts) -> Option<Fired> {
    let last = messages.last()?;
    let silence = facts.now.saturating_sub(last.timestamp);
    if last.role != "user" || silence <= facts.session_timeout {
        return None;
    }
    Some(Fired {
        message_ids: vec![last.id.clone()],
        reason: format!(
            "the user's last message got no reply; silent for {} (session timeout {})",
            duration(silence),
            duration(facts.session_timeout)
        ),
    })
}

fn long_conversation(messages: &[MessageRecord], max_messages: usize) -> Option<Fired> {
    (messages.len() > max_messages).then(|| Fired {
        message_ids: Vec::new(),
        reason: format!("{} messages, more than {max_messages}", messages.len()),
    })
}

/// Each user message with text, keyed by a hash of its normalised text: equal
/// texts end up next to each other without building a string per message.
struct UserTexts {
    /// (hash, message index), sorted.
    keyed: Vec<(u64, usize)>,
}

impl UserTexts {
    fn new(messages: &[MessageRecord]) -> UserTexts {
        let mut keyed: Vec<(u64, usize)> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.role == "user")
            .filter_map(|(i, m)| Some((normalised_hash(&m.text)?, i)))
            .collect();
        keyed.sort_unstable();
        UserTexts { keyed }
    }

    /// Groups of at least `n` messages with the same normalised text, each in
    /// conversation order, the groups ordered by their first message.
    fn groups(&self, messages: &[MessageRecord], n: usize) -> Vec<Vec<usize>> {
        let mut groups = Vec::new();
        for same_hash in self.keyed.chunk_by(|a, b| a.0 == b.0) {
            if same_hash.len() < n {
                continue;
            }
            let same_text = |a: usize, b: usize| {
                let (a, b) = (&messages[a].text, &messages[b].text);
                a == b || normalised(a).eq(normalised(b))
            };
            let head = same_hash[0].1;
            if same_hash.iter().all(|&(_, i)| same_text(head, i)) {
                groups.push(same_hash.iter().map(|&(_, i)| i).collect());
                continue;
            }
            // A hash collision put different texts together: split them.
            let mut rest: Vec<usize> = same_hash.iter().map(|&(_, i)| i).collect();
            while let Some(&head) = rest.first() {
                let (same, other): (Vec<usize>, Vec<usize>) =
                    rest.iter().partition(|&&i| same_text(head, i));
                if same.len() >= n {
                    groups.push(same);
                }
                rest = other;
            }
        }
        groups.sort_unstable_by_key(|group| group[0]);
        groups
    }
}

/// `text` lowercased char by char, trimmed, with each run of whitespace as one space.
fn normalised(text: &str) -> Normalised<'_> {
    Normalised {
        chars: text.chars(),
        lower: None,
        after_space: None,
        started: false,
    }
}

/// The iterator of [`normalised`], written out by hand: an adapter chain
/// (`split_whitespace` + `flat_map(to_lowercase)`) costs several times more per
/// char, and this runs on every repeated user text.
struct Normalised<'a> {
    chars: std::str::Chars<'a>,
    /// The rest of a char that lowercases to several.
    lower: Option<std::char::ToLowercase>,
    /// The char that follows the space just yielded.
    after_space: Option<char>,
    started: bool,
}

impl Normalised<'_> {
    fn lowercase(&mut self, c: char) -> char {
        if c.is_ascii() {
            return c.to_ascii_lowercase();
        }
        let mut lower = c.to_lowercase();
        // A char always lowercases to at least one char.
        let first = lower.next().unwrap_or(c);
        self.lower = Some(lower);
        first
    }
}

impl Iterator for Normalised<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        if let Some(lower) = &mut self.lower {
            if let Some(c) = lower.next() {
                return Some(c);
            }
            self.lower = None;
        }
        if let Some(c) = self.after_space.take() {
            return Some(self.lowercase(c));
        }
        let mut space = false;
        for c in self.chars.by_ref() {
            if c.is_whitespace() {
                space = self.started;
                continue;
            }
            self.started = true;
            if space {
                self.after_space = Some(c);
                return Some(' ');
            }
            return Some(self.lowercase(c));
        }
        None
    }
}

/// A hash of what [`normalised`] yields, or `None` for a text that is only
/// whitespace. Computed in one loop without building the string: this runs on
/// every user message of every conversation.
fn normalised_hash(text: &str) -> Option<u64> {
    // FxHash: fast, and equal hashes are checked against the texts anyway.
    fn mix(hash: u64, c: char) -> u64 {
        (hash.rotate_left(5) ^ u64::from(c)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
    }
    let mut hash = 0;
    let mut empty = true;
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = !empty;
            continue;
        }
        if space {
            hash = mix(hash, ' ');
            space = false;
        }
        empty = false;
        if c.is_ascii() {
            hash = mix(hash, c.to_ascii_lowercase());
        } else {
            hash = c.to_lowercase().fold(hash, mix);
        }
    }
    (!empty).then_some(hash)
}

fn user_repeated(texts: &UserTexts, messages: &[MessageRecord], n: usize) -> Option<Fired> {
    let mut groups = texts.groups(messages, n);
    if groups.is_empty() {
        return None;
    }
    // The first of the most repeated texts speaks for the rest.
    let top = groups
        .iter()
        .enumerate()
        .max_by_key(|(i, group)| (group.len(), std::cmp::Reverse(*i)))
        .map(|(i, group)| (i, group.len()))
        .unwrap_or_default();
    let example = &messages[groups[top.0][0]].text;
    let mut reason = format!("user sent {:?} {} times", excerpt(example), top.1);
    if groups.len() > 1 {
        reason.push_str(&format!(" ({} texts repeated)", groups.len()));
    }
    let mut indices: Vec<usize> = groups.drain(..).flatten().collect();
    indices.sort_unstable();
    Some(Fired {
        message_ids: indices.iter().map(|&i| messages[i].id.clone()).collect(),
        reason,
    })
}

/// The normalised text, cut to a length that fits in a reason.
fn excerpt(text: &str) -> String {
    const MAX_CHARS: usize = 60;
    let mut chars = normalised(text);
    let mut excerpt = String::with_capacity(text.len().min(4 * MAX_CHARS));
    excerpt.extend(chars.by_ref().take(MAX_CHARS));
    if chars.next().is_some() {
        excerpt.push('…');
    }
    excerpt
}

/// A message's word tokens, in one reused buffer so tokenizing allocates nothing
/// once the buffer has grown.
#[derive(Default)]
struct Tokens {
    /// The tokens, lowercased, back to back, as UTF-8.
    text: Vec<u8>,
    /// Byte range of each token in `text`.
    spans: Vec<(usize, usize)>,
}

impl Tokens {
    fn fill(&mut self, text: &str) {
        self.text.clear();
        self.spans.clear();
        if text.is_ascii() {
            self.fill_ascii(text);
            return;
        }
        let mut start = None;
        let mut utf8 = [0; 4];
        for c in text.chars() {
            if c.is_alphanumeric() {
                start.get_or_insert(self.text.len());
                for lower in c.to_lowercase() {
                    self.text
                        .extend_from_slice(lower.encode_utf8(&mut utf8).as_bytes());
                }
            } else if let Some(start) = start.take() {
                self.spans.push((start, self.text.len()));
            }
        }
        if let Some(start) = start {
            self.spans.push((start, self.text.len()));
        }
    }

    /// Most chat text is ASCII: there lowercasing keeps every byte in place, so
    /// the whole text is lowercased in one go and the tokens found in the copy.
    fn fill_ascii(&mut self, text: &str) {
        self.text.extend_from_slice(text.as_bytes());
        self.text.make_ascii_lowercase();
        let bytes = self.text.as_slice();
        let mut i = 0;
        while i < bytes.len() {
            while i < bytes.len() && !bytes[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                i += 1;
            }
            if i > start {
                self.spans.push((start, i));
            }
        }
    }

    fn get(&self, i: usize) -> &[u8] {
        let (start, end) = self.spans[i];
        &self.text[start..end]
    }

    /// Whether the tokens of `phrase` occur here one after the other.
    fn contains(&self, phrase: &[String]) -> bool {
        let Some(last_start) = self.spans.len().checked_sub(phrase.len()) else {
            return false;
        };
        !phrase.is_empty()
            && (0..=last_start).any(|start| {
                phrase
                    .iter()
                    .enumerate()
                    .all(|(j, word)| self.get(start + j) == word.as_bytes())
            })
    }
}

/// A keywords rule as the scan needs it: the role it reads (any when `None`) and its phrases.
pub type KeywordRule<'r> = (Option<&'r str>, &'r [Vec<String>]);

/// What the keyword rules found, by rule index; empty when there are none.
pub struct KeywordHits {
    by_rule: Vec<Option<KeywordHit>>,
}

/// What one keyword rule found.
struct KeywordHit {
    /// Indices of the messages with at least one phrase.
    messages: Vec<usize>,
    /// Whether each phrase was found somewhere, for the reason.
    found: Vec<bool>,
}

impl KeywordHits {
    /// What each keywords rule of `rules` finds in `messages`, tokenizing each
    /// message once for all of them; `rules` has `None` for the other rules, so
    /// indices are those of the whole rule list.
    pub fn new<'r>(
        rules: impl Iterator<Item = Option<KeywordRule<'r>>> + Clone,
        messages: &[MessageRecord],
    ) -> KeywordHits {
        let by_rule: Vec<Option<KeywordHit>> = rules
            .clone()
            .map(|rule| {
                rule.map(|(_, phrases)| KeywordHit {
                    messages: Vec::new(),
                    found: vec![false; phrases.len()],
                })
            })
            .collect();
        if by_rule.iter().all(Option::is_none) {
            return KeywordHits {
                by_rule: Vec::new(),
            };
        }
        let mut by_rule = by_rule;
        let mut tokens = Tokens::default();
        for (i, message) in messages.iter().enumerate() {
            let applies = |role: Option<&str>| role.is_none_or(|r| r == message.role);
            // Tokenize once per message, and only if some rule reads this role.
            if !rules.clone().flatten().any(|(role, _)| applies(role)) {
                continue;
            }
            tokens.fill(&message.text);
            for (rule, hit) in rules.clone().zip(by_rule.iter_mut()) {
                let (Some((role, phrases)), Some(hit)) = (rule, hit) else {
                    continue;
                };
                if !applies(role) {
                    continue;
                }
                let mut matched = false;
                for (phrase, found) in phrases.iter().zip(hit.found.iter_mut()) {
                    if tokens.contains(phrase) {
                        matched = true;
                        *found = true;
                    }
                }
                if matched {
                    hit.messages.push(i);
                }
            }
        }
        KeywordHits { by_rule }
    }

    /// What the keywords rule at `rule_index` fires with: at least
    /// `min_matches` of `messages` (of `role`) contain one of `phrases`.
    pub fn fired(
        &self,
        rule_index: usize,
        messages: &[MessageRecord],
        role: Option<&str>,
        phrases: &[Vec<String>],
        min_matches: usize,
    ) -> Option<Fired> {
        let hit = self.by_rule.get(rule_index)?.as_ref()?;
        keywords(hit, messages, role, phrases, min_matches)
    }
}

fn keywords(
    hit: &KeywordHit,
    messages: &[MessageRecord],
    role: Option<&str>,
    phrases: &[Vec<String>],
    min_matches: usize,
) -> Option<Fired> {
    if hit.messages.is_empty() || hit.messages.len() < min_matches {
        return None;
    }
    let found: Vec<String> = phrases
        .iter()
        .zip(&hit.found)
        .filter(|(_, found)| **found)
        .map(|(phrase, _)| format!("{:?}", phrase.join(" ")))
        .collect();
    let what = match role {
        Some(role) => format!("{role} message"),
        None => "message".to_string(),
    };
    Some(Fired {
        message_ids: hit
            .messages
            .iter()
            .map(|&i| messages[i].id.clone())
            .collect(),
        reason: format!(
            "{} {} {}",
            plural(hit.messages.len(), &what),
            if hit.messages.len() == 1 {
                "mentions"
            } else {
                "mention"
            },
            found.join(", ")
        ),
    })
}

/// "1 thing", "2 things".
fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// A number as a person writes it: `50`, `0.31`, at most 4 decimals.
fn number(value: f64) -> String {
    // Rounding first and printing the shortest form is several times cheaper
    // than `{:.4}` and needs no trimming of zeros.
    let rounded = (value * 10_000.0).round() / 10_000.0;
    if !rounded.is_finite() {
        // Beyond about 1e304 the scaling overflows; such numbers have no decimals.
        return value.to_string();
    }
    if rounded == 0.0 {
        // Also turns -0 into 0.
        return "0".to_string();
    }
    rounded.to_string()
}

/// A duration in its two largest units: `45s`, `12m`, `2h 5m`, `3d 4h`.
fn duration(micros: Micros) -> String {
    let seconds = micros.max(0) / 1_000_000;
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3_600 % 24, seconds / 60 % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::builtin::Value::{self, Count, Fraction};
    use crate::tag::config::{Rule, RuleKind};
    use crate::tag::evaluate::{TagResult, evaluate};
    use proptest::prelude::*;
    use std::collections::HashMap;

    const BASE: Micros = 1_780_000_000_000_000;
    const MINUTE: Micros = 60_000_000;

    fn message(role: &str, text: &str) -> MessageRecord {
        MessageRecord {
            seq: 0,
            id: String::new(),
            conversation_id: 1,
            role: role.to_string(),
            text: text.to_string(),
            timestamp: 0,
            flow: None,
            step: None,
            node_id: None,
            node_type: None,
            node_name: None,
            intent: None,
            confidence: None,
            unidentified: false,
            flow_completed: false,
            metadata: None,
            lang: None,
        }
    }

    fn unidentified(role: &str) -> MessageRecord {
        MessageRecord {
            unidentified: true,
            ..message(role, "sorry, I did not get that")
        }
    }

    fn with_confidence(confidence: f64) -> MessageRecord {
        MessageRecord {
            confidence: Some(confidence),
            ..message("user", "something")
        }
    }

    fn in_flow(role: &str, flow: &str, step: Option<&str>, completed: bool) -> MessageRecord {
        MessageRecord {
            flow: Some(flow.to_string()),
            step: step.map(str::to_string),
            flow_completed: completed,
            ..message(role, "flow message")
        }
    }

    /// Numbers the messages `m0`, `m1`, … one minute apart.
    fn conversation(messages: Vec<MessageRecord>) -> Vec<MessageRecord> {
        messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| MessageRecord {
                seq: i as u64,
                id: format!("m{i}"),
                timestamp: BASE + i as Micros * MINUTE,
                ..m
            })
            .collect()
    }

    fn facts_at(now: Micros) -> ConversationFacts {
        ConversationFacts {
            now,
            session_timeout: 30 * MINUTE,
        }
    }

    fn rule(name: &str, kind: RuleKind) -> Rule {
        Rule {
            name: name.to_string(),
            version: 1,
            kind,
        }
    }

    /// The built-in rule `name` with `params` (the rest at their defaults).
    fn builtin(name: &str, params: &[(&str, Value)]) -> RuleKind {
        RuleKind::builtin(name, params).unwrap()
    }

    fn builtins() -> Vec<Rule> {
        crate::tag::config::RawTagging::default()
            .validate()
            .unwrap()
            .rules
    }

    /// The one tag `rule` gives `messages`, evaluated alone.
    fn tag_of(rule_kind: RuleKind, messages: &[MessageRecord]) -> Option<TagResult> {
        let rules = [rule("t", rule_kind)];
        let mut tags = evaluate(&rules, messages, facts_at(BASE));
        assert!(tags.len() <= 1);
        tags.pop()
    }

    fn ids_of(rule_kind: RuleKind, messages: &[MessageRecord]) -> Option<Vec<String>> {
        tag_of(rule_kind, messages).map(|t| t.message_ids)
    }

    fn strings(ids: &[&str]) -> Option<Vec<String>> {
        Some(ids.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn unidentified_response_lists_every_unidentified_message() {
        let messages = conversation(vec![
            message("user", "hi"),
            unidentified("bot"),
            message("user", "hm"),
            message("bot", "ok"),
            unidentified("bot"),
        ]);
        let tag = tag_of(builtin("unidentified_response", &[]), &messages).unwrap();
        assert_eq!(Some(tag.message_ids), strings(&["m1", "m4"]));
        assert_eq!(tag.reason, "2 unidentified responses");
        let clean = conversation(vec![message("user", "hi"), message("bot", "hello")]);
        assert_eq!(tag_of(builtin("unidentified_response", &[]), &clean), None);
    }

    #[test]
    fn repeated_unidentified_needs_n_in_a_row_broken_only_by_an_identified_bot_message() {
        let n2 = builtin("repeated_unidentified", &[("n", Count(2))]);
        let broken = conversation(vec![
            unidentified("bot"),
            message("bot", "here is your answer"),
            unidentified("bot"),
        ]);
        assert_eq!(ids_of(n2.clone(), &broken), None);
        let not_broken = conversation(vec![
            unidentified("bot"),
            message("user", "what?"),
            message("agent", "let me see"),
            message("system", "agent joined"),
            unidentified("bot"),
        ]);
        let tag = tag_of(n2.clone(), &not_broken).unwrap();
        assert_eq!(Some(tag.message_ids), strings(&["m0", "m4"]));
        assert_eq!(tag.reason, "2 unidentified responses in a row");
    }

    #[test]
    fn repeated_unidentified_lists_every_qualifying_run() {
        let messages = conversation(vec![
            unidentified("bot"),
            unidentified("bot"),
            unidentified("bot"),
            message("bot", "answer"),
            unidentified("bot"),
            message("bot", "answer"),
            unidentified("bot"),
            unidentified("bot"),
        ]);
        let tag = tag_of(
            builtin("repeated_unidentified", &[("n", Count(2))]),
            &messages,
        )
        .unwrap();
        assert_eq!(
            Some(tag.message_ids),
            strings(&["m0", "m1", "m2", "m6", "m7"])
        );
        assert_eq!(tag.reason, "3 unidentified responses in a row, 2 times");
        assert_eq!(
            ids_of(
                builtin("repeated_unidentified", &[("n", Count(3))]),
                &messages
            ),
            strings(&["m0", "m1", "m2"])
        );
        assert_eq!(
            ids_of(
                builtin("repeated_unidentified", &[("n", Count(4))]),
                &messages
            ),
            None
        );
    }

    #[test]
    fn dropoff_is_the_last_flow_message_when_it_does_not_complete_the_flow() {
        let messages = conversation(vec![
            in_flow("bot", "billing", Some("start"), true),
            in_flow("bot", "password-reset", Some("ask-email"), false),
            message("user", "bye"),
        ]);
        let tag = tag_of(builtin("dropoff", &[]), &messages).unwrap();
        assert_eq!(Some(tag.message_ids), strings(&["m1"]));
        assert_eq!(
            tag.reason,
            "dropped off in flow password-reset at step ask-email"
        );

        let without_step = conversation(vec![in_flow("bot", "billing", None, false)]);
        assert_eq!(
            tag_of(builtin("dropoff", &[]), &without_step)
                .unwrap()
                .reason,
            "dropped off in flow billing"
        );
    }

    #[test]
    fn no_dropoff_when_the_last_flow_message_completes_it_or_there_is_no_flow() {
        let completed = conversation(vec![
            in_flow("bot", "password-reset", Some("ask-email"), false),
            in_flow("bot", "password-reset", Some("done"), true),
            message("user", "thanks"),
        ]);
        assert_eq!(tag_of(builtin("dropoff", &[]), &completed), None);
        let no_flow = conversation(vec![message("user", "hi"), message("bot", "hello")]);
        assert_eq!(tag_of(builtin("dropoff", &[]), &no_flow), None);
    }

    #[test]
    fn agent_handoff_points_at_the_first_agent_message() {
        let messages = conversation(vec![
            message("user", "human please"),
            message("agent", "hi, I'm Sam"),
            message("agent", "how can I help"),
        ]);
        let tag = tag_of(builtin("agent_handoff", &[]), &messages).unwrap();
        assert_eq!(Some(tag.message_ids), strings(&["m1"]));
        assert_eq!(tag.reason, "handed off to an agent (2 agent messages)");
        let bot_only = conversation(vec![message("user", "hi"), message("bot", "hello")]);
        assert_eq!(tag_of(builtin("agent_handoff", &[]), &bot_only), None);
    }

    #[test]
    fn low_confidence_is_strictly_below_the_threshold_on_user_messages() {
        let low = builtin("low_confidence", &[("threshold", Fraction(0.5))]);
        let messages = conversation(vec![
            with_confidence(0.5),
            with_confidence(0.31),
            MessageRecord {
                confidence: Some(0.1),
                ..message("bot", "bots don't count")
            },
            message("user", "no confidence"),
        ]);
        let tag = tag_of(low.clone(), &messages).unwrap();
        assert_eq!(Some(tag.message_ids), strings(&["m1"]));
        assert_eq!(tag.reason, "confidence 0.31 below 0.5");

        let at_threshold = conversation(vec![with_confidence(0.5), with_confidence(0.9)]);
        assert_eq!(tag_of(low.clone(), &at_threshold), None);

        let several = conversation(vec![with_confidence(0.4), with_confidence(0.12)]);
        let tag = tag_of(low, &several).unwrap();
        assert_eq!(
            tag.reason,
            "2 user messages with confidence below 0.5, lowest 0.12"
        );
    }

    #[test]
    fn user_repeated_compares_normalised_texts_and_ignores_empty_ones() {
        let messages = conversation(vec![
            message("user", "Reset  my password"),
            message("bot", "reset my password"),
            message("user", "  reset my\tPASSWORD "),
            message("user", ""),
            message("user", "   "),
            message("user", "hello"),
            message("user", "reset my passwords"),
        ]);
        let tag = tag_of(builtin("user_repeated", &[("n", Count(2))]), &messages).unwrap();
        assert_eq!(Some(tag.message_ids), strings(&["m0", "m2"]));
        assert_eq!(tag.reason, "user sent \"reset my password\" 2 times");
        assert_eq!(
            ids_of(builtin("user_repeated", &[("n", Count(3))]), &messages),
            None
        );
    }

    #[test]
    fn user_repeated_lists_every_repeated_text_in_conversation_order() {
        let messages = conversation(vec![
            message("user", "a"),
            message("user", "b"),
            message("user", "B"),
            message("user", "A"),
            message("user", "b"),
        ]);
        let tag = tag_of(builtin("user_repeated", &[("n", Count(2))]), &messages).unwrap();
        assert_eq!(
            Some(tag.message_ids),
            strings(&["m0", "m1", "m2", "m3", "m4"])
        );
        assert_eq!(tag.reason, "user sent \"b\" 3 times (2 texts repeated)");
    }

    #[test]
    fn user_texts_split_groups_whose_hashes_collide() {
        let messages = conversation(vec![
            message("user", "a"),
            message("user", "b"),
            message("user", "A"),
            message("user", "c"),
        ]);
        let texts = UserTexts {
            keyed: vec![(7, 0), (7, 1), (7, 2), (7, 3)],
        };
        assert_eq!(texts.groups(&messages, 2), vec![vec![0, 2]]);
        assert_eq!(texts.groups(&messages, 1).len(), 3);
    }

    #[test]
    fn normalised_hash_agrees_with_normalised_text() {
        for (a, b) in [
            ("  Hello\t WORLD ", "hello world"),
            ("\u{212A}elvin", "kelvin"),
            ("ÉTÉ  x", "été x"),
            ("a\u{0B}b", "a b"),
        ] {
            assert!(normalised(a).eq(normalised(b)), "{a:?}");
            assert_eq!(normalised_hash(a), normalised_hash(b), "{a:?}");
        }
        assert_ne!(normalised_hash("ab"), normalised_hash("a b"));
        assert_eq!(normalised("  İx  Y ").collect::<String>(), "i\u{307}x y");
        assert_eq!(normalised(" \t ").next(), None);
        assert_eq!(excerpt(&"ab ".repeat(40)).chars().count(), 61);
        assert_eq!(normalised_hash(" \t\n"), None);
        assert_eq!(normalised_hash(""), None);
    }

    #[test]
    fn no_bot_reply_needs_a_user_message_last_and_the_session_over() {
        let messages = conversation(vec![message("bot", "hi"), message("user", "hello?")]);
        let last = messages[1].timestamp;
        let rules = [rule("no_bot_reply", builtin("no_bot_reply", &[]))];
        let at = |now| evaluate(&rules, &messages, facts_at(now));
        assert!(at(last + 30 * MINUTE).is_empty(), "not past the timeout");
        let tags = at(last + 30 * MINUTE + 1);
        assert_eq!(tags[0].message_ids, ["m1"]);
        assert_eq!(
            tags[0].reason,
            "the user's last message got no reply; silent for 30m (session timeout 30m)"
        );
        let answered = conversation(vec![message("user", "hi"), message("bot", "hello")]);
        assert!(evaluate(&rules, &answered, facts_at(BASE + 1_000 * MINUTE)).is_empty());
    }

    #[test]
    fn long_conversation_is_more_than_max_messages_and_lists_none() {
        let long = builtin("long_conversation", &[("max_messages", Count(50))]);
        let fifty = conversation(vec![message("user", "x"); 50]);
        assert_eq!(tag_of(long.clone(), &fifty), None);
        let fifty_one = conversation(vec![message("user", "x"); 51]);
        let tag = tag_of(long, &fifty_one).unwrap();
        assert!(tag.message_ids.is_empty());
        assert_eq!(tag.reason, "51 messages, more than 50");
    }

    fn keywords_rule(role: Option<&str>, words: &[&str], min_matches: usize) -> RuleKind {
        RuleKind::Keywords {
            role: role.map(str::to_string),
            phrases: words.iter().map(|w| tokenize(w)).collect(),
            min_matches,
        }
    }

    #[test]
    fn tokenize_splits_on_non_alphanumerics_and_lowercases() {
        assert_eq!(
            tokenize("E-mail: JOHN_doe@Example.com, Straße №5 ÉTÉ"),
            [
                "e", "mail", "john", "doe", "example", "com", "straße", "5", "été"
            ]
        );
        assert!(tokenize(" ?! ").is_empty());
    }

    #[test]
    fn keyword_phrases_match_adjacent_whole_words_case_insensitively() {
        let rule = keywords_rule(None, &["money back", "refund"], 1);
        let messages = conversation(vec![
            message("user", "I want my MONEY, back!"),
            message("user", "money is back"),
            message("user", "refunded already"),
            message("user", "Refund?"),
            message("bot", "money-back guarantee"),
        ]);
        let tag = tag_of(rule, &messages).unwrap();
        assert_eq!(Some(tag.message_ids), strings(&["m0", "m3", "m4"]));
        assert_eq!(tag.reason, "3 messages mention \"money back\", \"refund\"");
    }

    #[test]
    fn keywords_respect_role_and_min_matches() {
        let messages = conversation(vec![
            message("bot", "refund policy"),
            message("user", "refund"),
            message("user", "a refund please"),
        ]);
        let user_refund = |min| keywords_rule(Some("user"), &["refund"], min);
        let tag = tag_of(user_refund(2), &messages).unwrap();
        assert_eq!(Some(tag.message_ids), strings(&["m1", "m2"]));
        assert_eq!(tag.reason, "2 user messages mention \"refund\"");
        assert_eq!(tag_of(user_refund(3), &messages), None);
        assert_eq!(
            ids_of(keywords_rule(Some("bot"), &["refund"], 1), &messages),
            strings(&["m0"])
        );
        assert_eq!(
            ids_of(keywords_rule(Some("agent"), &["refund"], 1), &messages),
            None
        );
    }

    #[test]
    fn several_keyword_rules_share_one_tokenization_and_keep_their_own_hits() {
        let rules = [
            rule("a", keywords_rule(Some("user"), &["alpha"], 1)),
            rule("b", keywords_rule(None, &["beta"], 1)),
            rule("c", builtin("agent_handoff", &[])),
        ];
        let messages = conversation(vec![
            message("user", "alpha beta"),
            message("bot", "alpha beta"),
        ]);
        let tags = evaluate(&rules, &messages, facts_at(BASE));
        let got: Vec<(&str, Vec<String>)> = tags
            .iter()
            .map(|t| (t.tag.as_str(), t.message_ids.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", vec!["m0".to_string()]),
                ("b", vec!["m0".to_string(), "m1".to_string()])
            ]
        );
    }

    fn threshold(metric: Metric, op: Op, value: f64) -> RuleKind {
        RuleKind::Threshold { metric, op, value }
    }

    #[test]
    fn threshold_ops_compare_the_metric_with_the_value() {
        let messages = conversation(vec![message("user", "a"); 10]);
        let fires =
            |op, value| tag_of(threshold(Metric::MessageCount, op, value), &messages).is_some();
        assert!(fires(Op::Gt, 9.0) && !fires(Op::Gt, 10.0));
        assert!(fires(Op::Ge, 10.0) && !fires(Op::Ge, 10.5));
        assert!(fires(Op::Lt, 11.0) && !fires(Op::Lt, 10.0));
        assert!(fires(Op::Le, 10.0) && !fires(Op::Le, 9.0));
        assert!(fires(Op::Eq, 10.0) && !fires(Op::Eq, 9.0));
        let tag = tag_of(threshold(Metric::MessageCount, Op::Ge, 10.0), &messages).unwrap();
        assert_eq!(tag.reason, "message_count 10 >= 10");
        assert!(tag.message_ids.is_empty());
    }

    #[test]
    fn threshold_metrics_measure_the_conversation() {
        let mut messages = conversation(vec![
            message("user", "hi"),
            unidentified("bot"),
            with_confidence(0.7),
            message("bot", "ok"),
            with_confidence(0.2),
            message("system", "closed"),
        ]);
        // Minute gaps 1, 1, 1, 1 then a 90-minute silence before the last message.
        messages[5].timestamp = messages[4].timestamp + 90 * MINUTE;
        let value = |metric| {
            let rules = [rule("t", threshold(metric, Op::Ge, f64::MIN))];
            let tags = evaluate(&rules, &messages, facts_at(BASE));
            tags.first()
                .map(|t| (t.reason.clone(), t.message_ids.clone()))
        };
        let expect = |metric: Metric, shown: &str, ids: &[&str]| {
            let (reason, message_ids) = value(metric).unwrap();
            assert!(
                reason.starts_with(&format!("{} {shown} >=", metric.name())),
                "{reason}"
            );
            assert_eq!(message_ids, ids, "{}", metric.name());
        };
        expect(Metric::MessageCount, "6", &[]);
        expect(Metric::UserMessages, "3", &[]);
        expect(Metric::BotMessages, "2", &[]);
        expect(Metric::UnidentifiedCount, "1", &[]);
        expect(Metric::DurationMinutes, "94", &[]);
        expect(Metric::MinConfidence, "0.2", &["m4"]);
        expect(Metric::MaxGapMinutes, "90", &["m5"]);
    }

    #[test]
    fn min_confidence_cannot_fire_without_a_user_confidence_and_max_gap_of_one_message_is_zero() {
        let messages = conversation(vec![message("user", "hi")]);
        for op in Op::ALL {
            assert_eq!(
                tag_of(threshold(Metric::MinConfidence, op, 0.5), &messages),
                None
            );
        }
        let tag = tag_of(threshold(Metric::MaxGapMinutes, Op::Eq, 0.0), &messages).unwrap();
        assert!(tag.message_ids.is_empty());
        assert_eq!(tag.reason, "max_gap_minutes 0 == 0");
    }

    #[test]
    fn results_are_sorted_by_tag_and_carry_the_rule_version() {
        let rules = [
            Rule {
                name: "zeta".into(),
                version: 3,
                kind: builtin("agent_handoff", &[]),
            },
            Rule {
                name: "alpha".into(),
                version: 2,
                kind: builtin("unidentified_response", &[]),
            },
        ];
        let messages = conversation(vec![unidentified("bot"), message("agent", "hi")]);
        let tags = evaluate(&rules, &messages, facts_at(BASE));
        let got: Vec<(&str, &str, u32)> = tags
            .iter()
            .map(|t| (t.tag.as_str(), t.rule.as_str(), t.rule_version))
            .collect();
        assert_eq!(got, [("alpha", "alpha", 2), ("zeta", "zeta", 3)]);
    }

    #[test]
    fn an_empty_conversation_earns_no_tag() {
        let mut rules = builtins();
        rules.push(rule("few", threshold(Metric::MessageCount, Op::Lt, 1.0)));
        assert!(evaluate(&rules, &[], facts_at(BASE)).is_empty());
    }

    #[test]
    fn numbers_and_durations_read_naturally() {
        assert_eq!(number(50.0), "50");
        assert_eq!(number(0.31), "0.31");
        assert_eq!(number(-2.5), "-2.5");
        assert_eq!(number(1.0 / 3.0), "0.3333");
        assert_eq!(number(0.1 + 0.2), "0.3");
        assert_eq!(number(-0.00001), "0");
        assert_eq!(number(94.0), "94");
        assert_eq!(number(7.583_333), "7.5833");
        assert_eq!(number(1e306), 1e306.to_string());
        assert_eq!(duration(45_000_000), "45s");
        assert_eq!(duration(30 * MINUTE), "30m");
        assert_eq!(duration(125 * MINUTE), "2h 5m");
        assert_eq!(duration(120 * MINUTE), "2h");
        assert_eq!(duration(24 * 60 * MINUTE), "1d");
        assert_eq!(duration((26 * 60 + 7) * MINUTE), "1d 2h");
    }

    // ---- property tests: the engine against deliberately naive oracles ----

    const ROLES: [&str; 4] = ["user", "bot", "agent", "system"];
    const TEXTS: [&str; 16] = [
        "hi",
        "Hi",
        "  hi  ",
        "HI there",
        "hi   there",
        "hi\tthere ",
        "reset password",
        "Reset  Password ",
        "",
        "   ",
        "ΟΔΟΣ",
        "οδοσ",
        "I want a refund",
        "money back, please",
        "money-back",
        "thanks",
    ];
    const FLOWS: [&str; 2] = ["password-reset", "billing"];
    const STEPS: [&str; 2] = ["ask-email", "confirm"];

    type RawMessage = (
        usize,
        usize,
        bool,
        Option<usize>,
        Option<usize>,
        bool,
        Option<f64>,
        Micros,
    );

    fn arb_message() -> impl Strategy<Value = RawMessage> {
        (
            0..ROLES.len(),
            0..TEXTS.len(),
            prop::bool::weighted(0.3),
            prop::option::of(0..FLOWS.len()),
            prop::option::of(0..STEPS.len()),
            prop::bool::weighted(0.3),
            prop::option::of(prop_oneof![Just(0.0), Just(0.5), Just(1.0), 0.0..=1.0f64]),
            // Ties (0) happen; gaps reach past the 30-minute timeout.
            prop_oneof![Just(0), 0..(3 * 60 * MINUTE)],
        )
    }

    fn arb_conversation() -> impl Strategy<Value = Vec<MessageRecord>> {
        prop::collection::vec(arb_message(), 0..40).prop_map(|raw| {
            let mut timestamp = BASE;
            raw.into_iter()
                .enumerate()
                .map(
                    |(i, (role, text, unidentified, flow, step, completed, confidence, gap))| {
                        timestamp += gap;
                        MessageRecord {
                            seq: i as u64,
                            id: format!("m{i}"),
                            timestamp,
                            flow: flow.map(|f| FLOWS[f].to_string()),
                            step: step.map(|s| STEPS[s].to_string()),
                            flow_completed: completed,
                            unidentified,
                            confidence,
                            ..message(ROLES[role], TEXTS[text])
                        }
                    },
                )
                .collect()
        })
    }

    fn arb_facts() -> impl Strategy<Value = (Micros, Micros)> {
        (
            0..(4 * 60 * MINUTE),
            prop_oneof![
                Just(30 * MINUTE),
                Just(24 * 60 * MINUTE),
                0..(2 * 60 * MINUTE)
            ],
        )
    }

    fn facts_for(
        messages: &[MessageRecord],
        (after, timeout): (Micros, Micros),
    ) -> ConversationFacts {
        ConversationFacts {
            now: messages.last().map_or(BASE, |m| m.timestamp) + after,
            session_timeout: timeout,
        }
    }

    fn id_list(messages: &[&MessageRecord]) -> Option<Vec<String>> {
        (!messages.is_empty()).then(|| messages.iter().map(|m| m.id.clone()).collect())
    }

    fn oracle_unidentified_response(messages: &[MessageRecord]) -> Option<Vec<String>> {
        id_list(
            &messages
                .iter()
                .filter(|m| m.unidentified)
                .collect::<Vec<_>>(),
        )
    }

    fn oracle_repeated_unidentified(messages: &[MessageRecord], n: usize) -> Option<Vec<String>> {
        let mut runs: Vec<Vec<&MessageRecord>> = vec![Vec::new()];
        for m in messages {
            if m.unidentified {
                runs.last_mut().unwrap().push(m);
            } else if m.role == "bot" {
                runs.push(Vec::new());
            }
        }
        let qualifying: Vec<&MessageRecord> = runs
            .into_iter()
            .filter(|run| run.len() >= n)
            .flatten()
            .collect();
        id_list(&qualifying)
    }

    fn oracle_dropoff(messages: &[MessageRecord]) -> Option<Vec<String>> {
        let mut last = None;
        for m in messages {
            if m.flow.is_some() {
                last = Some(m);
            }
        }
        match last {
            Some(m) if !m.flow_completed => Some(vec![m.id.clone()]),
            _ => None,
        }
    }

    fn oracle_agent_handoff(messages: &[MessageRecord]) -> Option<Vec<String>> {
        let agents: Vec<&MessageRecord> = messages.iter().filter(|m| m.role == "agent").collect();
        agents.first().map(|m| vec![m.id.clone()])
    }

    fn oracle_low_confidence(messages: &[MessageRecord], threshold: f64) -> Option<Vec<String>> {
        let low: Vec<&MessageRecord> = messages
            .iter()
            .filter(|m| m.role == "user")
            .filter(|m| matches!(m.confidence, Some(c) if c < threshold))
            .collect();
        id_list(&low)
    }

    fn oracle_user_repeated(messages: &[MessageRecord], n: usize) -> Option<Vec<String>> {
        let normalise = |text: &str| {
            text.split_whitespace()
                .map(|w| w.chars().flat_map(char::to_lowercase).collect::<String>())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut counts: HashMap<String, usize> = HashMap::new();
        for m in messages.iter().filter(|m| m.role == "user") {
            let text = normalise(&m.text);
            if !text.is_empty() {
                *counts.entry(text).or_default() += 1;
            }
        }
        let repeated: Vec<&MessageRecord> = messages
            .iter()
            .filter(|m| m.role == "user")
            .filter(|m| counts.get(&normalise(&m.text)).is_some_and(|&c| c >= n))
            .collect();
        id_list(&repeated)
    }

    fn oracle_no_bot_reply(
        messages: &[MessageRecord],
        facts: ConversationFacts,
    ) -> Option<Vec<String>> {
        let last = messages.last()?;
        (last.role == "user" && facts.now - last.timestamp > facts.session_timeout)
            .then(|| vec![last.id.clone()])
    }

    fn oracle_long_conversation(messages: &[MessageRecord], max: usize) -> Option<Vec<String>> {
        (messages.len() > max).then(Vec::new)
    }

    /// The message ids of the tag `name` among `tags`, checking its bookkeeping.
    fn found(tags: &[TagResult], name: &str) -> Option<Vec<String>> {
        let tag = tags.iter().find(|t| t.tag == name)?;
        assert_eq!(tag.rule, name);
        assert!(!tag.reason.is_empty());
        Some(tag.message_ids.clone())
    }

    fn alone(
        kind: RuleKind,
        messages: &[MessageRecord],
        facts: ConversationFacts,
    ) -> Option<Vec<String>> {
        found(&evaluate(&[rule("x", kind)], messages, facts), "x")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn unidentified_response_matches_oracle(messages in arb_conversation()) {
            prop_assert_eq!(
                alone(builtin("unidentified_response", &[]), &messages, facts_at(BASE)),
                oracle_unidentified_response(&messages)
            );
        }

        #[test]
        fn repeated_unidentified_matches_oracle(messages in arb_conversation(), n in 1usize..5) {
            prop_assert_eq!(
                alone(builtin("repeated_unidentified", &[("n", Count(n))]), &messages, facts_at(BASE)),
                oracle_repeated_unidentified(&messages, n)
            );
        }

        #[test]
        fn dropoff_matches_oracle(messages in arb_conversation()) {
            prop_assert_eq!(
                alone(builtin("dropoff", &[]), &messages, facts_at(BASE)),
                oracle_dropoff(&messages)
            );
        }

        #[test]
        fn agent_handoff_matches_oracle(messages in arb_conversation()) {
            prop_assert_eq!(
                alone(builtin("agent_handoff", &[]), &messages, facts_at(BASE)),
                oracle_agent_handoff(&messages)
            );
        }

        #[test]
        fn low_confidence_matches_oracle(
            messages in arb_conversation(),
            threshold in prop_oneof![Just(0.0), Just(0.5), Just(1.0), 0.0..=1.0f64],
        ) {
            prop_assert_eq!(
                alone(builtin("low_confidence", &[("threshold", Fraction(threshold))]), &messages, facts_at(BASE)),
                oracle_low_confidence(&messages, threshold)
            );
        }

        #[test]
        fn user_repeated_matches_oracle(messages in arb_conversation(), n in 1usize..5) {
            prop_assert_eq!(
                alone(builtin("user_repeated", &[("n", Count(n))]), &messages, facts_at(BASE)),
                oracle_user_repeated(&messages, n)
            );
        }

        #[test]
        fn no_bot_reply_matches_oracle(messages in arb_conversation(), facts in arb_facts()) {
            let facts = facts_for(&messages, facts);
            prop_assert_eq!(
                alone(builtin("no_bot_reply", &[]), &messages, facts),
                oracle_no_bot_reply(&messages, facts)
            );
        }

        #[test]
        fn long_conversation_matches_oracle(messages in arb_conversation(), max in 1usize..45) {
            prop_assert_eq!(
                alone(builtin("long_conversation", &[("max_messages", Count(max))]), &messages, facts_at(BASE)),
                oracle_long_conversation(&messages, max)
            );
        }

        #[test]
        fn all_builtins_together_match_their_oracles(
            messages in arb_conversation(),
            facts in arb_facts(),
            n in 1usize..4,
            max in 1usize..45,
        ) {
            let facts = facts_for(&messages, facts);
            let mut rules = builtins();
            for rule in &mut rules {
                match rule.name.as_str() {
                    "repeated_unidentified" | "user_repeated" => rule.kind = builtin(&rule.name, &[("n", Count(n))]),
                    "long_conversation" => rule.kind = builtin(&rule.name, &[("max_messages", Count(max))]),
                    _ => {}
                }
            }
            let tags = evaluate(&rules, &messages, facts);
            prop_assert!(tags.windows(2).all(|w| w[0].tag < w[1].tag));
            prop_assert_eq!(found(&tags, "unidentified_response"), oracle_unidentified_response(&messages));
            prop_assert_eq!(found(&tags, "repeated_unidentified"), oracle_repeated_unidentified(&messages, n));
            prop_assert_eq!(found(&tags, "dropoff"), oracle_dropoff(&messages));
            prop_assert_eq!(found(&tags, "agent_handoff"), oracle_agent_handoff(&messages));
            prop_assert_eq!(found(&tags, "low_confidence"), oracle_low_confidence(&messages, 0.5));
            prop_assert_eq!(found(&tags, "user_repeated"), oracle_user_repeated(&messages, n));
            prop_assert_eq!(found(&tags, "no_bot_reply"), oracle_no_bot_reply(&messages, facts));
            prop_assert_eq!(found(&tags, "long_conversation"), oracle_long_conversation(&messages, max));
        }

        #[test]
        fn normalisation_and_tokens_match_naive_versions(text in "[ \t\u{0B}\u{A0}\u{2003}aZ9İΣς.\u{212A}-]{0,24}") {
            let naive: String = text
                .split_whitespace()
                .map(|w| w.chars().flat_map(char::to_lowercase).collect::<String>())
                .collect::<Vec<_>>()
                .join(" ");
            prop_assert_eq!(normalised(&text).collect::<String>(), naive.clone());
            prop_assert_eq!(normalised_hash(&text), normalised_hash(&naive));
            prop_assert_eq!(normalised_hash(&text).is_none(), naive.is_empty());
            let naive_tokens: Vec<String> = text
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(|w| w.chars().flat_map(char::to_lowercase).collect())
                .collect();
            prop_assert_eq!(tokenize(&text), naive_tokens);
        }

        #[test]
        fn keywords_match_oracle(
            messages in arb_conversation(),
            words in prop::collection::vec(
                prop::sample::select(vec!["hi", "HI there", "refund", "money back", "back please", "οδοσ", "there hi"]),
                1..4,
            ),
            role in prop::option::of(0..ROLES.len()),
            min_matches in 1usize..4,
        ) {
            let role = role.map(|r| ROLES[r]);
            let naive_tokens = |text: &str| -> Vec<String> {
                text.split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                    .map(|w| w.chars().flat_map(char::to_lowercase).collect())
                    .collect()
            };
            let phrases: Vec<Vec<String>> = words.iter().map(|w| naive_tokens(w)).collect();
            let matching: Vec<&MessageRecord> = messages
                .iter()
                .filter(|m| role.is_none_or(|r| r == m.role))
                .filter(|m| {
                    let tokens = naive_tokens(&m.text);
                    phrases.iter().any(|p| tokens.windows(p.len()).any(|w| w == p.as_slice()))
                })
                .collect();
            let expected = (matching.len() >= min_matches).then(|| id_list(&matching)).flatten();
            prop_assert_eq!(
                alone(keywords_rule(role, &words, min_matches), &messages, facts_at(BASE)),
                expected
            );
        }

        #[test]
        fn threshold_matches_oracle(
            messages in arb_conversation(),
            metric in prop::sample::select(Metric::ALL.to_vec()),
            op in prop::sample::select(Op::ALL.to_vec()),
            value in prop_oneof![0.0..=1.0f64, 0.0..100.0f64, (0u32..40).prop_map(f64::from)],
        ) {
            let user_confidences: Vec<f64> = messages
                .iter()
                .filter(|m| m.role == "user")
                .filter_map(|m| m.confidence)
                .collect();
            let count = |role: &str| messages.iter().filter(|m| m.role == role).count() as f64;
            let minutes = |micros: Micros| micros as f64 / MINUTE as f64;
            let measured = match metric {
                Metric::MessageCount => Some(messages.len() as f64),
                Metric::UserMessages => Some(count("user")),
                Metric::BotMessages => Some(count("bot")),
                Metric::UnidentifiedCount => Some(messages.iter().filter(|m| m.unidentified).count() as f64),
                Metric::DurationMinutes => Some(minutes(
                    messages.last().map_or(0, |m| m.timestamp) - messages.first().map_or(0, |m| m.timestamp),
                )),
                Metric::MinConfidence => user_confidences.iter().copied().reduce(f64::min),
                Metric::MaxGapMinutes => Some(minutes(
                    messages.windows(2).map(|w| w[1].timestamp - w[0].timestamp).max().unwrap_or(0),
                )),
            };
            let holds = match op {
                Op::Gt => measured.is_some_and(|m| m > value),
                Op::Ge => measured.is_some_and(|m| m >= value),
                Op::Lt => measured.is_some_and(|m| m < value),
                Op::Le => measured.is_some_and(|m| m <= value),
                Op::Eq => measured == Some(value),
            };
            let got = alone(threshold(metric, op, value), &messages, facts_at(BASE));
            prop_assert_eq!(got.is_some(), holds && !messages.is_empty());
        }
    }
}
