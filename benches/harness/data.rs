//! The data set: generated up front with `convlog_gen`, serialised into
//! request bodies, and analysed for the query workloads (vocabulary by frequency,
//! phrases, time range, channels, and a marker word per batch for "time to searchable").

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use convlog_gen::{GenConfig, GenMessage, TextStyle, generate};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// Longest token the server indexes (index-schema `max_token_len`).
const MAX_TOKEN_LEN: usize = 64;
/// Marker candidates kept per batch.
const MARKER_CANDIDATES: usize = 64;
/// One message in this many feeds the phrase statistics.
const PHRASE_SAMPLE: usize = 8;

/// What the harness sends and what it knows about it.
pub struct Dataset {
    /// Request bodies: JSON arrays of up to `batch_size` messages.
    pub batches: Vec<Vec<u8>>,
    pub messages: usize,
    pub conversations_asked: usize,
    /// The bot with the most messages (queries go there).
    pub bot: String,
    pub bots: usize,
    /// Channels of `bot`, most messages first.
    pub channels: Vec<(String, usize)>,
    pub min_ts: i64,
    pub max_ts: i64,
    /// Plain lowercase ASCII words (see `build`) by the number of messages containing them, most first.
    pub words: Vec<(String, u32)>,
    /// Two-word phrases seen in a sample of the data, most frequent first, with their sampled counts.
    pub phrases: Vec<(String, u32)>,
    /// Per batch: a token that occurs in no other message of the data set, if any.
    pub markers: Vec<Option<String>>,
    pub text_bytes: u64,
    pub body_bytes: u64,
}

/// How to generate.
pub struct Spec {
    pub seed: u64,
    pub messages: usize,
    pub batch_size: usize,
    pub end: DateTime<Utc>,
    pub span_days: u32,
    pub bots: Vec<String>,
    /// Leave out each message's `lang` (builds before #16 refuse the field).
    pub without_lang: bool,
}

/// Words as the server's tokenizer cuts them: maximal alphanumeric runs, lowercased.
pub fn tokens(text: &str) -> impl Iterator<Item = Cow<'_, str>> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|token| !token.is_empty() && token.len() <= MAX_TOKEN_LEN)
        .map(|token| {
            if token.chars().any(char::is_uppercase) {
                Cow::Owned(token.to_lowercase())
            } else {
                Cow::Borrowed(token)
            }
        })
}

/// Everything gathered while the messages stream by.
struct Builder {
    limit: usize,
    batch_size: usize,
    without_lang: bool,
    batches: Vec<Vec<u8>>,
    current: Vec<u8>,
    current_count: usize,
    messages: usize,
    bots: HashMap<String, usize>,
    channels: HashMap<(String, String), usize>,
    min_ts: i64,
    max_ts: i64,
    /// Token → number of messages containing it.
    counts: HashMap<String, u32>,
    bigrams: HashMap<String, u32>,
    /// Tokens seen inside a chunk such as an e-mail address, `ORD-123` or `don't`,
    /// which PostgreSQL's parser keeps whole or splits differently.
    joined: HashSet<String>,
    candidates: Vec<Vec<String>>,
    current_candidates: Vec<String>,
    text_bytes: u64,
    error: Option<anyhow::Error>,
}

impl Builder {
    fn message(&mut self, message: &GenMessage) {
        if self.error.is_some() || self.messages >= self.limit {
            return;
        }
        if let Err(err) = self.analyse(message) {
            self.error = Some(err);
            return;
        }
        self.current
            .push(if self.current_count == 0 { b'[' } else { b',' });
        let written = if self.without_lang {
            let message = GenMessage {
                lang: None,
                ..message.clone()
            };
            serde_json::to_writer(&mut self.current, &message)
        } else {
            serde_json::to_writer(&mut self.current, message)
        };
        if let Err(err) = written {
            self.error = Some(err.into());
            return;
        }
        self.current_count += 1;
        self.messages += 1;
        if self.current_count == self.batch_size {
            self.finish_batch();
        }
    }

    fn analyse(&mut self, message: &GenMessage) -> anyhow::Result<()> {
        let ts = DateTime::parse_from_rfc3339(&message.timestamp)
            .with_context(|| format!("generated timestamp {:?}", message.timestamp))?
            .timestamp_micros();
        self.min_ts = self.min_ts.min(ts);
        self.max_ts = self.max_ts.max(ts);
        match self.bots.get_mut(&message.bot_id) {
            Some(count) => *count += 1,
            None => {
                self.bots.insert(message.bot_id.clone(), 1);
            }
        }
        *self
            .channels
            .entry((message.bot_id.clone(), message.channel.clone()))
            .or_default() += 1;
        self.text_bytes += message.text.len() as u64;

        for chunk in message.text.split_whitespace() {
            let core = chunk.trim_matches(|c: char| ".,!?;:()\"'".contains(c));
            if core.chars().any(|c| !c.is_alphanumeric()) {
                for token in tokens(core) {
                    if !self.joined.contains(token.as_ref()) {
                        self.joined.insert(token.into_owned());
                    }
                }
            }
        }
        let mut seen: Vec<Cow<'_, str>> = tokens(&message.text).collect();
        if self.messages.is_multiple_of(PHRASE_SAMPLE) {
            for pair in seen.windows(2) {
                if pair.iter().all(|t| t.chars().all(char::is_alphabetic)) {
                    *self
                        .bigrams
                        .entry(format!("{} {}", pair[0], pair[1]))
                        .or_default() += 1;
                }
            }
        }
        seen.sort_unstable();
        seen.dedup();
        for token in seen {
            if self.current_candidates.len() < MARKER_CANDIDATES
                && token.len() >= 4
                && token.chars().any(|c| c.is_ascii_digit())
            {
                self.current_candidates.push(token.to_string());
            }
            match self.counts.get_mut(token.as_ref()) {
                Some(count) => *count += 1,
                None => {
                    self.counts.insert(token.into_owned(), 1);
                }
            }
        }
        Ok(())
    }

    fn finish_batch(&mut self) {
        if self.current_count == 0 {
            return;
        }
        self.current.push(b']');
        self.batches.push(std::mem::take(&mut self.current));
        self.candidates
            .push(std::mem::take(&mut self.current_candidates));
        self.current_count = 0;
    }
}

/// Generates the data set with `convlog_gen` and serialises it into request bodies.
pub fn build(spec: &Spec) -> anyhow::Result<Dataset> {
    let mut builder = Builder {
        limit: spec.messages,
        batch_size: spec.batch_size,
        without_lang: spec.without_lang,
        batches: Vec::new(),
        current: Vec::new(),
        current_count: 0,
        messages: 0,
        bots: HashMap::new(),
        channels: HashMap::new(),
        min_ts: i64::MAX,
        max_ts: i64::MIN,
        counts: HashMap::new(),
        bigrams: HashMap::new(),
        joined: HashSet::new(),
        candidates: Vec::new(),
        current_candidates: Vec::new(),
        text_bytes: 0,
        error: None,
    };
    // The generator makes ~12 messages per conversation. A counting pass finds
    // how many conversations give at least `messages`; the messages come in time
    // order, so cutting the surplus only trims the newest hours of the span.
    let config_for = |conversations: usize| {
        let mut config = GenConfig::new(spec.seed, conversations, spec.end);
        // The benchmarks' text: a long tail of rare words, as a real index meets.
        config.text = TextStyle::Zipf;
        config.bots = spec.bots.clone();
        config.span_days = spec.span_days;
        config
    };
    let mut conversations = (spec.messages / 12).max(1);
    let mut produced = 0usize;
    generate(&config_for(conversations), |_| produced += 1);
    if produced < spec.messages {
        let scale = spec.messages as f64 / produced.max(1) as f64;
        conversations = (conversations as f64 * scale * 1.01).ceil() as usize;
    }
    generate(&config_for(conversations), |message| {
        builder.message(&message)
    });
    if let Some(err) = builder.error.take() {
        return Err(err);
    }
    builder.finish_batch();
    if builder.messages == 0 {
        bail!("the generator produced no messages");
    }

    let (bot, _) = builder
        .bots
        .iter()
        .max_by_key(|(name, count)| (**count, std::cmp::Reverse((*name).clone())))
        .map(|(name, count)| (name.clone(), *count))
        .expect("at least one message");
    let mut channels: Vec<(String, usize)> = builder
        .channels
        .iter()
        .filter(|((b, _), _)| *b == bot)
        .map(|((_, channel), count)| (channel.clone(), *count))
        .collect();
    channels.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));

    let markers = builder
        .candidates
        .iter()
        .map(|candidates| {
            candidates
                .iter()
                .find(|token| builder.counts.get(token.as_str()) == Some(&1))
                .cloned()
        })
        .collect();
    // Query words are plain lowercase ASCII words never seen inside a compound
    // chunk, so every peer's tokenizer cuts them the way convlog's does, and
    // with no other inflection in the data (convlog finds `thanks` in "thank
    // you", the peers only the word itself): like is compared with like.
    let joined = builder.joined;
    let mut stems: HashMap<String, u32> = HashMap::new();
    for token in builder.counts.keys() {
        *stems.entry(english_stem(token)).or_default() += 1;
    }
    let plain = |token: &str| {
        token.chars().all(|c| c.is_ascii_lowercase())
            && !joined.contains(token)
            && stems.get(&english_stem(token)) == Some(&1)
    };
    let mut words: Vec<(String, u32)> = builder
        .counts
        .into_iter()
        .filter(|(token, _)| plain(token))
        .collect();
    words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut phrases: Vec<(String, u32)> = builder
        .bigrams
        .into_iter()
        .filter(|(phrase, _)| phrase.split(' ').all(plain))
        .collect();
    phrases.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    phrases.truncate(100_000);

    let body_bytes = builder.batches.iter().map(|b| b.len() as u64).sum();
    Ok(Dataset {
        batches: builder.batches,
        messages: builder.messages,
        conversations_asked: conversations,
        bot,
        bots: builder.bots.len(),
        channels,
        min_ts: builder.min_ts,
        max_ts: builder.max_ts,
        words,
        phrases,
        markers,
        text_bytes: builder.text_bytes,
        body_bytes,
    })
}

/// The stem convlog gives an English word (generated text is English).
fn english_stem(word: &str) -> String {
    convlog_querylang::analysis::stem("en", word)
}
