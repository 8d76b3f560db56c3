//! Deterministic generator of realistic chatbot conversation logs.
//!
//! The output feeds load tests, benchmarks and demos of `POST /v1/messages`, so it has to be
//! reproducible byte for byte from a seed: everything random comes from a local xoshiro256**
//! generator and the few transcendental functions are implemented here with plain IEEE
//! arithmetic instead of the platform libm, whose last-bit results may differ between systems.

use std::cmp::Reverse;
use std::collections::binary_heap::PeekMut;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod realistic;
use realistic::Lang;

/// One generated message, shaped like an ingest item of the HTTP API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GenMessage {
    /// Message id, unique per bot: `m-<conversation number>-<index>`.
    pub id: String,
    /// Bot the conversation belongs to.
    pub bot_id: String,
    /// Raw end-user id (phone number, web visitor id, ...), deliberately PII-like.
    pub user_id: String,
    /// Lowercase channel name: web, whatsapp, facebook, skype, telegram or sms.
    pub channel: String,
    /// Author role: user, bot, agent or system.
    pub role: String,
    /// Message text.
    pub text: String,
    /// RFC 3339 UTC timestamp with milliseconds and a `Z` suffix.
    pub timestamp: String,
    /// Explicit session id, present on a configurable share of conversations.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub session_id: Option<String>,
    /// Flow the bot message belongs to.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub flow: Option<String>,
    /// Step of the flow the bot message belongs to.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub step: Option<String>,
    /// Node id of the bot message, e.g. `n-0042-3`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub node_id: Option<String>,
    /// Node type: prompt, message, action or condition.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub node_type: Option<String>,
    /// Human-readable node name, e.g. `Ask phone number`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub node_name: Option<String>,
    /// Detected intent of a user message.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub intent: Option<String>,
    /// Intent confidence in 0..=1 with two decimals, only alongside an intent.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub confidence: Option<f64>,
    /// `Some(true)` on bot fallback messages that did not understand the user.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unidentified: Option<bool>,
    /// `Some(true)` on the bot message of the last step of a completed flow.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub flow_completed: Option<bool>,
    /// Small free-form JSON object, e.g. client locale and app version.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub metadata: Option<Value>,
    /// The language of the text (BCP 47): `en` for generated text, as an
    /// exporter that knows its bot's language would send it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lang: Option<String>,
}

/// What the generated texts are like.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TextStyle {
    /// For benchmarks and tests: English lead phrases ("where is my order")
    /// padded with words drawn from a 30,000-word Zipf vocabulary, so searches
    /// meet a long tail of rare words as in a real index. Its output for a
    /// seed is pinned.
    #[default]
    Zipf,
    /// For demos: what a support bot really sees. Each user writes their
    /// country's language (English, German, French, Spanish or Portuguese);
    /// they start the hand-written flows in paraphrases, answer with order
    /// numbers, e-mail addresses and phone numbers, make the odd typo, and ask
    /// for things the bot has no flow for — families of paraphrases that
    /// recur, as the inputs "What the bot misses" clusters.
    Realistic,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// Seed of all randomness; the same seed always yields the same bytes.
    pub seed: u64,
    /// Number of conversations to generate.
    pub conversations: usize,
    /// Bot ids conversations are spread over; an empty list means `["demo"]`.
    pub bots: Vec<String>,
    /// Exclusive upper bound of all timestamps.
    pub end: DateTime<Utc>,
    /// Timestamps fall in `[end - span_days, end)`; 0 is treated as 1.
    pub span_days: u32,
    /// Share of conversations that carry an explicit `session_id`.
    pub explicit_session_share: f64,
    /// What the texts are like.
    pub text: TextStyle,
}

impl GenConfig {
    /// Config with default bots (`["demo"]`), a 30-day span, 5% explicit
    /// sessions and the benchmarks' Zipf text.
    pub fn new(seed: u64, conversations: usize, end: DateTime<Utc>) -> Self {
        Self {
            seed,
            conversations,
            bots: vec!["demo".to_owned()],
            end,
            span_days: 30,
            explicit_session_share: 0.05,
            text: TextStyle::Zipf,
        }
    }
}

/// Streams the messages in global timestamp order (ties: by id) to `sink`, holding only active conversations in memory.
pub fn generate(cfg: &GenConfig, mut sink: impl FnMut(GenMessage)) {
    run(cfg, |m| {
        sink(m);
        ControlFlow::Continue(())
    });
}

/// Writes the messages as NDJSON, one per line; returns the number of messages.
pub fn write_ndjson(cfg: &GenConfig, mut out: impl Write) -> io::Result<u64> {
    // Serialising into a plain Vec and writing in large chunks is much faster than letting
    // serde_json issue its many tiny writes against a generic writer.
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut count = 0u64;
    let mut failure = None;
    run(cfg, |m| {
        let mut written = serde_json::to_writer(&mut buf, &m).map_err(io::Error::from);
        buf.push(b'\n');
        count += 1;
        if written.is_ok() && buf.len() >= 1 << 16 {
            written = out.write_all(&buf);
            buf.clear();
        }
        match written {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failure = Some(e);
                ControlFlow::Break(())
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    out.write_all(&buf)?;
    out.flush()?;
    Ok(count)
}

// ---------------------------------------------------------------------------------------------
// Tunables. They are calibrated against the benchmark spec; the unit tests pin the resulting
// shares, so change them together with the tests.

const MAX_MESSAGES: usize = 40;
const MIN_GAP_MS: i64 = 2_000;
const MAX_GAP_MS: i64 = 120_000;
/// Longest possible conversation; starts stop this early so every timestamp stays below `end`.
const MAX_CONVERSATION_MS: i64 = (MAX_MESSAGES as i64 - 1) * MAX_GAP_MS;
/// Strictly more than a 24 h session timeout, so sessions of one user never merge.
const USER_REST_MS: i64 = 25 * 3_600_000;
const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

const VOCAB_SIZE: usize = 30_000;
const FLOW_COUNT: usize = 200;
const P_TWO_FLOWS: f64 = 0.3;
const P_FLOW_COMPLETED: f64 = 0.6;
const P_STOP_AFTER_DROP: f64 = 0.5;
const P_GREETING: f64 = 0.35;
const P_CLOSING: f64 = 0.4;
const P_FALLBACK: f64 = 0.065;
const P_FALLBACK_AGAIN: f64 = 0.3;
const P_REPEAT_TEXT: f64 = 0.4;
const P_HANDOFF: f64 = 0.02;
const P_METADATA: f64 = 0.3;

// ---------------------------------------------------------------------------------------------
// Randomness.

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    mix64(*state)
}

/// The splitmix64 finaliser: a bijection on u64, which keeps derived user ids injective.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256**: tiny, fast and fully specified, so streams never change with a dependency.
#[derive(Clone)]
struct Rng {
    s: [u64; 4],
}

impl Rng {
    fn new(seed: u64) -> Self {
        let mut st = seed;
        Self {
            s: [
                splitmix64(&mut st),
                splitmix64(&mut st),
                splitmix64(&mut st),
                splitmix64(&mut st),
            ],
        }
    }

    fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in 0..n (multiply-shift; the bias is far below anything observable).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in lo..=hi.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn pick_str(&mut self, items: &[&'static str]) -> &'static str {
        items[self.below(items.len())]
    }
}

/// Picks an index by integer weights.
fn weighted(rng: &mut Rng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    let mut r = rng.below(total as usize) as u32;
    for (i, &w) in weights.iter().enumerate() {
        if r < w {
            return i;
        }
        r -= w;
    }
    weights.len() - 1
}

// ---------------------------------------------------------------------------------------------
// Deterministic math: only +, -, *, / and exact operations, so results are identical on every
// IEEE-754 platform regardless of the libm in use.

fn pow2(k: i64) -> f64 {
    // Split so that both halves stay in the normal exponent range.
    let half = k / 2;
    let a = f64::from_bits(((half + 1023) as u64) << 52);
    let b = f64::from_bits(((k - half + 1023) as u64) << 52);
    a * b
}

fn det_ln(x: f64) -> f64 {
    if x <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if !x.is_finite() {
        return x;
    }
    let bits = x.to_bits();
    let raw_exp = ((bits >> 52) & 0x7ff) as i64;
    if raw_exp == 0 {
        return det_ln(x * pow2(64)) - 64.0 * std::f64::consts::LN_2;
    }
    let mut e = raw_exp - 1023;
    let mut m = f64::from_bits((bits & 0x000F_FFFF_FFFF_FFFF) | 0x3FF0_0000_0000_0000);
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // ln(m) = 2 atanh(s); |s| <= 0.172, so 14 terms reach full double precision.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = s;
    let mut k = 3.0;
    for _ in 0..14 {
        term *= s2;
        sum += term / k;
        k += 2.0;
    }
    2.0 * sum + e as f64 * std::f64::consts::LN_2
}

fn det_exp(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x < -745.0 {
        return 0.0;
    }
    if x > 709.0 {
        return f64::INFINITY;
    }
    let k = (x / std::f64::consts::LN_2).round();
    let r = x - k * std::f64::consts::LN_2;
    // |r| <= 0.35: the Taylor series converges to full precision within 18 terms.
    let mut term = 1.0;
    let mut sum = 1.0;
    for i in 1..=18 {
        term *= r / f64::from(i);
        sum += term;
    }
    sum * pow2(k as i64)
}

fn det_pow(base: f64, exponent: f64) -> f64 {
    det_exp(exponent * det_ln(base))
}

const QUANTILE_BITS: u32 = 12;
const QUANTILE_POINTS: usize = 1 << QUANTILE_BITS;

/// A distribution tabulated by its quantile function and sampled by linear interpolation:
/// per-message sampling then costs two loads instead of a few hundred flops of ln/exp.
struct Quantiles(Vec<f64>);

impl Quantiles {
    fn new(quantile: impl Fn(f64) -> f64) -> Self {
        Self(
            (0..=QUANTILE_POINTS)
                .map(|i| quantile(i as f64 / QUANTILE_POINTS as f64))
                .collect(),
        )
    }

    fn sample(&self, rng: &mut Rng) -> f64 {
        let r = rng.next_u64();
        let i = (r >> (64 - QUANTILE_BITS)) as usize;
        let frac =
            (r & ((1 << (64 - QUANTILE_BITS)) - 1)) as f64 / (1u64 << (64 - QUANTILE_BITS)) as f64;
        self.0[i] + frac * (self.0[i + 1] - self.0[i])
    }
}

struct Tables {
    /// Target byte length of user texts: log-logistic, median 40, clamped to 20..=250 so that
    /// even a trailing e-mail address keeps the text within 300 bytes.
    user_text_len: Quantiles,
    /// Think time before a user or agent message in ms: 2 s plus exponential (mean 18 s), capped.
    human_gap_ms: Quantiles,
    /// Intent confidence: Kumaraswamy(a = 3.7, b = 1.6), Beta-like with mode ≈ 0.85 and about
    /// 12% below 0.5; fallback-triggering messages add the rest of the ~15% low tail.
    confidence: Quantiles,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| Tables {
        user_text_len: Quantiles::new(|u| {
            if u <= 0.0 {
                return 20.0;
            }
            if u >= 1.0 {
                return 250.0;
            }
            (40.0 * det_pow(u / (1.0 - u), 1.0 / 3.2)).clamp(20.0, 250.0)
        }),
        human_gap_ms: Quantiles::new(|u| {
            let gap = MIN_GAP_MS as f64 - 18_000.0 * det_ln(1.0 - u);
            gap.min(MAX_GAP_MS as f64)
        }),
        confidence: Quantiles::new(|u| {
            det_pow(1.0 - det_pow(1.0 - u, 1.0 / 1.6), 1.0 / 3.7).clamp(0.0, 1.0)
        }),
    })
}

// ---------------------------------------------------------------------------------------------
// Vocabulary: real chat words on the top ranks so demos read well, unique pseudo-words below.

#[rustfmt::skip]
const TOP_WORDS: &[&str] = &[
    "i", "the", "to", "my", "you", "a", "and", "is", "it", "for", "me", "can", "not", "on", "in",
    "have", "of", "order", "do", "this", "with", "that", "how", "what", "please", "help", "be",
    "an", "at", "account", "no", "yes", "get", "password", "but", "was", "am", "are", "just",
    "need", "hi", "thanks", "your", "from", "reset", "refund", "phone", "number", "delivery",
    "cancel", "want", "why", "when", "where", "still", "now", "got", "there", "they", "we", "ok",
    "so", "if", "up", "out", "did", "didnt", "dont", "cant", "im", "its", "been", "has", "had",
    "will", "would", "could", "should", "one", "all", "any", "some", "again", "new", "change",
    "email", "address", "payment", "card", "money", "back", "item", "package", "arrived",
    "received", "sent", "send", "code", "login", "log", "app", "website", "problem", "error",
    "issue", "working", "work", "wrong", "today", "yesterday", "days", "week", "time", "hello",
    "hey", "thank", "much", "very", "really", "about", "after", "before", "already", "only",
    "also", "like", "know", "tell", "said", "make", "use", "try", "tried", "call", "talk", "agent",
    "human", "person", "support", "service", "customer", "name", "update", "check", "status",
    "track", "tracking", "invoice", "bill", "charged", "twice", "price", "free", "shipping",
    "return", "exchange", "size", "store", "open", "close", "hours", "online", "buy", "bought",
    "pay", "paid", "late", "lost", "damaged", "broken", "missing", "sorry", "more", "less",
    "other", "same", "first", "last", "next", "day", "month", "year", "subscription", "plan",
    "delete", "sign", "register", "verify", "confirm", "link", "message", "text", "mail", "here",
    "then", "than", "because", "or", "by", "as", "too", "well", "good", "great", "fine", "bad",
    "who", "which", "sms", "voucher", "discount", "gift", "points", "login", "fast", "slow", "ago",
    "since", "until", "tomorrow", "morning", "evening", "weekend",
];

#[rustfmt::skip]
const ONSETS: &[&str] = &[
    "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br",
    "ch", "dr", "fl", "gr", "kr", "pl", "sh", "st", "th", "tr",
];
const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "ea", "ou"];
const CODAS: &[&str] = &["n", "r", "s", "l", "t", "m", "x", "nd", "ck"];

struct Vocab {
    buf: String,
    spans: Vec<(u32, u32)>,
    /// Walker/Vose alias table over Zipf(s = 1) weights: (acceptance threshold out of 2^32,
    /// alias). Kept at 8 bytes per entry because the column is drawn uniformly over 30,000
    /// entries and cache misses dominate sampling.
    alias: Vec<(u32, u32)>,
}

impl Vocab {
    fn word(&self, rank: usize) -> &str {
        let (a, b) = self.spans[rank];
        &self.buf[a as usize..b as usize]
    }

    fn sample_rank(&self, rng: &mut Rng) -> usize {
        let r = rng.next_u64();
        let col = (((r >> 32) * self.alias.len() as u64) >> 32) as usize;
        let (threshold, alias) = self.alias[col];
        if (r as u32) < threshold {
            col
        } else {
            alias as usize
        }
    }

    fn sample(&self, rng: &mut Rng) -> &str {
        self.word(self.sample_rank(rng))
    }
}

fn vocab() -> &'static Vocab {
    static VOCAB: OnceLock<Vocab> = OnceLock::new();
    VOCAB.get_or_init(build_vocab)
}

fn build_vocab() -> Vocab {
    let mut seen: HashSet<String> = HashSet::with_capacity(VOCAB_SIZE * 2);
    let mut buf = String::with_capacity(VOCAB_SIZE * 8);
    let mut spans = Vec::with_capacity(VOCAB_SIZE);
    let mut add = |w: &str, seen: &mut HashSet<String>| {
        if seen.insert(w.to_owned()) {
            let start = buf.len() as u32;
            buf.push_str(w);
            spans.push((start, buf.len() as u32));
        }
    };
    for w in TOP_WORDS {
        add(w, &mut seen);
    }
    // The vocabulary must not depend on the config seed: word ranks are part of the format.
    let mut rng = Rng::new(0x766F_6361_6275_6C61);
    let mut w = String::new();
    while seen.len() < VOCAB_SIZE {
        let rank = seen.len();
        // Frequent words are short in natural language; rare ones get more syllables.
        let syllables = if rank < 2_000 {
            rng.range(1, 2)
        } else if rank < 10_000 {
            rng.range(2, 3)
        } else {
            rng.range(2, 4)
        };
        w.clear();
        for _ in 0..syllables {
            w.push_str(rng.pick_str(ONSETS));
            w.push_str(rng.pick_str(VOWELS));
        }
        if rng.chance(0.35) {
            w.push_str(rng.pick_str(CODAS));
        }
        if w.len() >= 3 {
            add(&w, &mut seen);
        }
    }

    let n = spans.len();
    let weights: Vec<f64> = (0..n).map(|r| 1.0 / (r + 1) as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
    let mut alias = vec![(u32::MAX, 0u32); n];
    let mut small: Vec<usize> = Vec::new();
    let mut large: Vec<usize> = Vec::new();
    for (i, &p) in scaled.iter().enumerate().rev() {
        if p < 1.0 {
            small.push(i);
        } else {
            large.push(i);
        }
    }
    while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
        small.pop();
        let threshold = (scaled[s] * 4_294_967_296.0).min(4_294_967_295.0) as u32;
        alias[s] = (threshold, l as u32);
        scaled[l] = (scaled[l] + scaled[s]) - 1.0;
        if scaled[l] < 1.0 {
            large.pop();
            small.push(l);
        }
    }
    // Leftovers are 1.0 up to rounding: accept (all but 2^-32 of the time) and alias to self.
    for i in small.into_iter().chain(large) {
        alias[i] = (u32::MAX, i as u32);
    }
    Vocab { buf, spans, alias }
}

// ---------------------------------------------------------------------------------------------
// Flow catalog.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum NodeKind {
    Prompt,
    Message,
    Action,
    Condition,
}

impl NodeKind {
    fn as_str(self) -> &'static str {
        match self {
            NodeKind::Prompt => "prompt",
            NodeKind::Message => "message",
            NodeKind::Action => "action",
            NodeKind::Condition => "condition",
        }
    }

    fn title(self) -> &'static str {
        match self {
            NodeKind::Prompt => "Prompt",
            NodeKind::Message => "Message",
            NodeKind::Action => "Action",
            NodeKind::Condition => "Condition",
        }
    }
}

/// What a prompt asks for, which decides both the bot question and the user's answer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ask {
    Email,
    Phone,
    OrderId,
    Code,
    Confirm,
    Name,
    Date,
    Address,
    Zip,
    Reason,
    Generic,
}

struct Step {
    name: String,
    kind: NodeKind,
    ask: Ask,
    /// Node number (within the flow) of variant 0; variants number consecutively.
    first_node: u32,
    variants: u32,
    /// Node name of variant 0 for hand-written flows; generated flows derive it from numbers.
    title: Option<String>,
}

struct Flow {
    number: u32,
    name: String,
    intent: String,
    leads: &'static [&'static str],
    steps: Vec<Step>,
}

impl Flow {
    fn node_id(&self, step: &Step, variant: u32) -> String {
        let mut s = String::with_capacity(16);
        s.push_str("n-");
        push_num(&mut s, u64::from(self.number), 4);
        s.push('-');
        push_num(&mut s, u64::from(step.first_node + variant), 1);
        s
    }

    fn node_name(&self, step: &Step, variant: u32) -> String {
        let mut s = String::with_capacity(32);
        match &step.title {
            Some(t) => {
                s.push_str(t);
                s.push_str(VARIANT_SUFFIXES[variant as usize]);
            }
            None => {
                s.push_str(step.kind.title());
                s.push(' ');
                push_num(&mut s, u64::from(self.number), 1);
                s.push('.');
                push_num(&mut s, u64::from(step.first_node + variant), 1);
            }
        }
        s
    }
}

const VARIANT_SUFFIXES: &[&str] = &[
    "",
    " (retry)",
    " (returning user)",
    " (mobile)",
    " (after hours)",
    " (VIP)",
    " (short)",
    " (fallback path)",
];

/// Hand-written flows: (name, intent, what users say to start it, steps).
#[rustfmt::skip]
const NAMED_FLOWS: &[(&str, &str, &[&str], &[&str])] = &[
    ("password-reset", "reset_password",
        &["i forgot my password", "how do i reset my password", "i cannot log in to my account",
         "password reset please"],
        &["ask-email", "verify-code", "set-password", "confirm-reset"]),
    ("order-status", "order_status",
        &["where is my order", "what is the status of my order", "my order has not arrived yet"],
        &["ask-order-id", "lookup-order", "show-status", "anything-else"]),
    ("refund-request", "request_refund",
        &["i want a refund", "can i get my money back", "i would like to request a refund"],
        &["ask-order-id", "ask-reason", "check-eligibility", "confirm-refund", "send-confirmation"]),
    ("cancel-order", "cancel_order",
        &["i want to cancel my order", "please cancel my order"],
        &["ask-order-id", "confirm-cancel", "cancel-order", "send-confirmation"]),
    ("delivery-tracking", "track_delivery",
        &["when will my delivery arrive", "track my delivery", "my package is late"],
        &["ask-order-id", "lookup-tracking", "show-eta"]),
    ("change-address", "change_address",
        &["i need to change my delivery address", "wrong address on my order"],
        &["ask-order-id", "ask-address", "confirm-address", "update-address"]),
    ("update-phone", "update_phone_number",
        &["i have a new phone number", "change my phone number"],
        &["ask-phone", "verify-code", "update-phone", "confirm-update"]),
    ("open-account", "open_account",
        &["i want to open an account", "how do i sign up"],
        &["ask-name", "ask-email", "ask-phone", "verify-code", "create-account", "welcome"]),
    ("close-account", "close_account",
        &["please delete my account", "i want to close my account"],
        &["ask-email", "ask-reason", "confirm-close", "close-account"]),
    ("billing-question", "billing_question",
        &["i have a question about my invoice", "why was i charged twice"],
        &["ask-invoice-number", "lookup-invoice", "explain-charge", "anything-else"]),
    ("payment-failed", "payment_failed",
        &["my payment failed", "my card was declined"],
        &["ask-order-id", "check-payment", "show-options"]),
    ("opening-hours", "opening_hours",
        &["when are you open", "what are your opening hours"],
        &["ask-location", "show-hours", "anything-else"]),
    ("store-locator", "find_store",
        &["where is the nearest store", "find a store near me"],
        &["ask-zip", "find-store", "show-store"]),
    ("appointment-booking", "book_appointment",
        &["i want to book an appointment", "can i schedule a call"],
        &["ask-date", "ask-time", "ask-phone", "confirm-booking", "send-confirmation"]),
    ("newsletter-signup", "subscribe_newsletter",
        &["sign me up for the newsletter", "i want the newsletter"],
        &["ask-email", "confirm-email", "subscribe"]),
    ("return-item", "return_item",
        &["how do i return an item", "i want to send this back"],
        &["ask-order-id", "ask-reason", "check-return-window", "send-label", "confirm-return"]),
    ("warranty-claim", "warranty_claim",
        &["my phone is broken", "warranty claim for my device"],
        &["ask-order-id", "ask-description", "check-warranty", "create-ticket", "confirm-ticket"]),
    ("login-problem", "login_problem",
        &["i cannot log in", "the app says my account is locked"],
        &["ask-email", "check-account", "send-unlock-link", "anything-else"]),
    ("technical-support", "tech_support",
        &["the app keeps crashing", "something is not working"],
        &["ask-description", "ask-device", "show-troubleshooting", "anything-else"]),
    ("subscription-cancel", "cancel_subscription",
        &["cancel my subscription", "stop my monthly plan"],
        &["ask-email", "ask-reason", "confirm-cancel", "cancel-subscription", "send-confirmation"]),
    ("gift-card-balance", "gift_card_balance",
        &["how much is left on my gift card", "gift card balance"],
        &["ask-card-number", "lookup-balance", "show-balance"]),
    ("loyalty-points", "loyalty_points",
        &["how many points do i have", "check my loyalty points"],
        &["ask-email", "lookup-points", "show-points"]),
    ("product-info", "product_info",
        &["do you have this in stock", "tell me about the new model"],
        &["ask-product", "lookup-product", "show-product", "anything-else"]),
    ("complaint", "file_complaint",
        &["i want to make a complaint", "i am not happy with the service"],
        &["ask-description", "ask-email", "create-ticket", "confirm-ticket"]),
    ("feedback", "give_feedback",
        &["i have some feedback", "can i leave a review"],
        &["ask-rating", "ask-comment", "thank-you"]),
];

const GENERIC_LEADS: &[&str] = &[
    "i have a question about",
    "i need help with",
    "can you help me with",
    "question about",
    "hello i need",
];

fn classify_step(name: &str) -> (NodeKind, Ask) {
    let ask = match name {
        "ask-email" => Ask::Email,
        "ask-phone" => Ask::Phone,
        "ask-order-id" | "ask-invoice-number" => Ask::OrderId,
        "verify-code" | "ask-card-number" => Ask::Code,
        "ask-name" => Ask::Name,
        "ask-date" | "ask-time" => Ask::Date,
        "ask-address" => Ask::Address,
        "ask-zip" | "ask-location" => Ask::Zip,
        "ask-reason" => Ask::Reason,
        "confirm-reset" | "confirm-update" | "confirm-return" | "confirm-ticket" => {
            return (NodeKind::Message, Ask::Generic);
        }
        n if n.starts_with("confirm-") => Ask::Confirm,
        "anything-else" => Ask::Confirm,
        n if n.starts_with("ask-") => Ask::Generic,
        _ => {
            let kind = if name.starts_with("check-") {
                NodeKind::Condition
            } else if [
                "lookup-", "send-", "update-", "create-", "cancel-", "close-", "set-",
            ]
            .iter()
            .any(|p| name.starts_with(p))
                || matches!(name, "subscribe" | "find-store")
            {
                NodeKind::Action
            } else {
                NodeKind::Message
            };
            return (kind, Ask::Generic);
        }
    };
    (NodeKind::Prompt, ask)
}

fn step_title(name: &str) -> String {
    match name {
        "ask-phone" => return "Ask phone number".to_owned(),
        "ask-order-id" => return "Ask order number".to_owned(),
        "ask-zip" => return "Ask postcode".to_owned(),
        "anything-else" => return "Ask anything else".to_owned(),
        _ => {}
    }
    let mut out = String::with_capacity(name.len());
    for (i, part) in name.split('-').enumerate() {
        if i == 0 {
            let mut chars = part.chars();
            if let Some(c) = chars.next() {
                out.push(c.to_ascii_uppercase());
                out.push_str(chars.as_str());
            }
        } else {
            out.push(' ');
            out.push_str(part);
        }
    }
    out
}

struct Catalog {
    flows: Vec<Flow>,
    /// Cumulative Zipf(s = 1) popularity, so the hand-written flows dominate like real top flows.
    cdf: Vec<f64>,
}

impl Catalog {
    fn pick(&self, rng: &mut Rng) -> usize {
        let u = rng.f64();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.flows.len() - 1)
    }
}

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(build_catalog)
}

fn build_catalog() -> Catalog {
    // Fixed seed: the bot design is the same for every generated data set.
    let mut rng = Rng::new(0x666C_6F77_7321);
    let mut flows = Vec::with_capacity(FLOW_COUNT);
    for i in 0..FLOW_COUNT {
        let number = i as u32 + 1;
        // (name, kind, ask, title of variant 0)
        let mut specs: Vec<(String, NodeKind, Ask, Option<String>)> = Vec::new();
        let (name, intent, leads) =
            if let Some(&(name, intent, leads, named_steps)) = NAMED_FLOWS.get(i) {
                for s in named_steps {
                    let (kind, ask) = classify_step(s);
                    specs.push(((*s).to_owned(), kind, ask, Some(step_title(s))));
                }
                (name.to_owned(), intent.to_owned(), leads)
            } else {
                let count = rng.range(3, 8);
                for j in 1..=count {
                    let kind = match weighted(&mut rng, &[40, 30, 20, 10]) {
                        0 => NodeKind::Prompt,
                        1 => NodeKind::Message,
                        2 => NodeKind::Action,
                        _ => NodeKind::Condition,
                    };
                    let ask = if kind == NodeKind::Prompt && rng.chance(0.4) {
                        *rng.pick(&[
                            Ask::Email,
                            Ask::Phone,
                            Ask::OrderId,
                            Ask::Code,
                            Ask::Confirm,
                            Ask::Name,
                            Ask::Date,
                            Ask::Address,
                            Ask::Zip,
                            Ask::Reason,
                        ])
                    } else {
                        Ask::Generic
                    };
                    specs.push((format!("step-{j}"), kind, ask, None));
                }
                (
                    format!("flow-{number:04}"),
                    format!("intent_{number:04}"),
                    GENERIC_LEADS,
                )
            };
        let mut next_node = 1u32;
        let steps = specs
            .into_iter()
            .map(|(name, kind, ask, title)| {
                // About 4.5 variants per step give ~5,000 distinct nodes over all flows.
                let variants = rng.range(1, VARIANT_SUFFIXES.len()) as u32;
                let first_node = next_node;
                next_node += variants;
                Step {
                    name,
                    kind,
                    ask,
                    first_node,
                    variants,
                    title,
                }
            })
            .collect();
        flows.push(Flow {
            number,
            name,
            intent,
            leads,
            steps,
        });
    }
    let total: f64 = (1..=flows.len()).map(|r| 1.0 / r as f64).sum();
    let mut acc = 0.0;
    let cdf = (1..=flows.len())
        .map(|r| {
            acc += 1.0 / r as f64 / total;
            acc
        })
        .collect();
    Catalog { flows, cdf }
}

// ---------------------------------------------------------------------------------------------
// Time.

fn push_num(buf: &mut String, mut n: u64, width: usize) {
    let mut tmp = [b'0'; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // The buffer is pre-filled with '0', so widening the slice is the zero padding.
    let start = i.min(tmp.len().saturating_sub(width));
    buf.push_str(std::str::from_utf8(&tmp[start..]).unwrap_or_default());
}

/// RFC 3339 with milliseconds, hand-rolled because it runs once per message on the hot path.
fn format_ts(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    let in_day = ms.rem_euclid(DAY_MS);
    // Civil-from-days (H. Hinnant), valid for the whole proleptic Gregorian range we use.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut s = String::with_capacity(24);
    push_num(&mut s, year.max(0) as u64, 4);
    s.push('-');
    push_num(&mut s, month as u64, 2);
    s.push('-');
    push_num(&mut s, day as u64, 2);
    s.push('T');
    push_num(&mut s, (in_day / HOUR_MS) as u64, 2);
    s.push(':');
    push_num(&mut s, (in_day / 60_000 % 60) as u64, 2);
    s.push(':');
    push_num(&mut s, (in_day / 1_000 % 60) as u64, 2);
    s.push('.');
    push_num(&mut s, (in_day % 1_000) as u64, 3);
    s.push('Z');
    s
}

/// Relative traffic per UTC hour: quiet nights, busy office hours and evenings.
const HOURLY_WEIGHTS: [f64; 24] = [
    3.0, 2.0, 1.5, 1.5, 1.5, 2.0, 4.0, 7.0, 10.0, 12.0, 13.0, 13.0, 12.0, 12.0, 13.0, 13.0, 12.0,
    11.0, 11.0, 11.0, 10.0, 8.0, 6.0, 4.0,
];

/// Maps "intensity" (cumulative expected traffic) to wall-clock time and back, so uniformly
/// spread conversation starts in intensity space follow the daily rhythm in real time.
struct Diurnal {
    origin: i64,
    prefix: [f64; 25],
}

impl Diurnal {
    fn new(t0: i64) -> Self {
        let mut prefix = [0.0; 25];
        for h in 0..24 {
            prefix[h + 1] = prefix[h] + HOURLY_WEIGHTS[h];
        }
        Self {
            origin: t0.div_euclid(DAY_MS) * DAY_MS,
            prefix,
        }
    }

    fn intensity(&self, t: i64) -> f64 {
        let rel = t - self.origin;
        let day = rel.div_euclid(DAY_MS);
        let in_day = rel.rem_euclid(DAY_MS);
        let hour = (in_day / HOUR_MS) as usize;
        let frac = (in_day % HOUR_MS) as f64 / HOUR_MS as f64;
        day as f64 * self.prefix[24] + self.prefix[hour] + HOURLY_WEIGHTS[hour] * frac
    }

    fn time(&self, intensity: f64) -> i64 {
        let day = (intensity / self.prefix[24]).floor();
        let rem = intensity - day * self.prefix[24];
        let hour = (self.prefix[1..24].partition_point(|&p| p <= rem)).min(23);
        let frac = ((rem - self.prefix[hour]) / HOURLY_WEIGHTS[hour]).clamp(0.0, 1.0);
        self.origin + day as i64 * DAY_MS + hour as i64 * HOUR_MS + (frac * HOUR_MS as f64) as i64
    }
}

// ---------------------------------------------------------------------------------------------
// Users.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Channel {
    Web,
    Whatsapp,
    Facebook,
    Skype,
    Telegram,
    Sms,
}

impl Channel {
    const ALL: [Channel; 6] = [
        Channel::Web,
        Channel::Whatsapp,
        Channel::Facebook,
        Channel::Skype,
        Channel::Telegram,
        Channel::Sms,
    ];
    const WEIGHTS: [u64; 6] = [35, 30, 15, 8, 7, 5];

    fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::Whatsapp => "whatsapp",
            Channel::Facebook => "facebook",
            Channel::Skype => "skype",
            Channel::Telegram => "telegram",
            Channel::Sms => "sms",
        }
    }
}

/// (locale, mobile prefix with country code, random digits before the 8-digit tail, weight)
const COUNTRIES: [(&str, &str, u32, u64); 8] = [
    ("en-US", "+1", 2, 25),
    ("en-GB", "+447", 1, 15),
    ("de-DE", "+4915", 1, 20),
    ("fr-FR", "+336", 0, 10),
    ("es-ES", "+346", 0, 8),
    ("it-IT", "+393", 1, 7),
    ("nl-NL", "+316", 0, 5),
    ("pt-BR", "+55119", 0, 10),
];

const APP_VERSIONS: &[&str] = &["3.2.1", "3.2.0", "3.1.4", "2.9.8"];

fn pick_by_hash(h: u64, weights: impl Iterator<Item = u64> + Clone) -> usize {
    let total: u64 = weights.clone().sum();
    let mut r = h % total;
    for (i, w) in weights.enumerate() {
        if r < w {
            return i;
        }
        r -= w;
    }
    0
}

#[derive(Clone, Copy)]
struct Profile {
    channel: Channel,
    country: usize,
    app_version: &'static str,
}

struct Users {
    key: u64,
    mul: u64,
    add: u64,
    pool: usize,
    /// End of each user's latest conversation; the only per-user state kept.
    last_end: Vec<i64>,
}

const TEN_POW_8: u64 = 100_000_000;

impl Users {
    fn new(seed: u64, conversations: usize) -> Self {
        let key = mix64(seed ^ 0x0075_7365_7273);
        // An affine map with a multiplier coprime to 10 permutes 0..10^8, so the 8-digit
        // tails of generated phone numbers (and thus all user ids) are distinct per user.
        let mut mul = (mix64(key) % TEN_POW_8) | 1;
        if mul.is_multiple_of(5) {
            mul += 2;
        }
        let pool = (conversations / 3).max(1);
        Self {
            key,
            mul,
            add: mix64(key ^ 1) % TEN_POW_8,
            pool,
            last_end: vec![i64::MIN; pool],
        }
    }

    fn hash(&self, idx: usize) -> u64 {
        mix64(self.key ^ (idx as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn profile(&self, idx: usize) -> Profile {
        let h = self.hash(idx);
        Profile {
            channel: Channel::ALL[pick_by_hash(h & 0xFFFF, Channel::WEIGHTS.into_iter())],
            country: pick_by_hash((h >> 16) & 0xFFFF, COUNTRIES.iter().map(|c| c.3)),
            app_version: APP_VERSIONS[((h >> 32) % APP_VERSIONS.len() as u64) as usize],
        }
    }

    fn tail(&self, idx: usize) -> u64 {
        ((idx as u64 % TEN_POW_8) * self.mul + self.add) % TEN_POW_8
    }

    fn user_id(&self, idx: usize, p: Profile) -> String {
        let h = mix64(self.hash(idx));
        let tail = self.tail(idx);
        let mut s = String::with_capacity(28);
        match p.channel {
            Channel::Whatsapp | Channel::Sms => {
                let (_, prefix, extra, _) = COUNTRIES[p.country];
                s.push_str(prefix);
                if extra > 0 {
                    let lo = 10u64.pow(extra - 1);
                    push_num(&mut s, lo + h % (9 * lo), extra as usize);
                }
                push_num(&mut s, tail, 8);
            }
            Channel::Web => {
                s.push_str("web-");
                push_hex(&mut s, mix64(self.key ^ 0x5745_4200 ^ idx as u64));
            }
            Channel::Skype => {
                s.push_str("live:.cid.");
                push_hex(&mut s, mix64(self.key ^ 0x534B_5950 ^ idx as u64));
            }
            Channel::Facebook => {
                push_num(&mut s, 1 + h % 9, 1);
                push_num(&mut s, (h >> 8) % 10_000_000, 7);
                push_num(&mut s, tail, 8);
            }
            Channel::Telegram => {
                push_num(&mut s, 1 + h % 7, 1);
                push_num(&mut s, tail, 8);
            }
        }
        s
    }

    /// A random pool user who has rested long enough, or a brand-new user when none is found
    /// quickly, so the rest rule holds without ever stalling.
    fn pick(&mut self, rng: &mut Rng, start: i64) -> usize {
        for _ in 0..16 {
            let u = rng.below(self.pool);
            if self.last_end[u].saturating_add(USER_REST_MS) <= start {
                return u;
            }
        }
        self.last_end.push(i64::MIN);
        self.last_end.len() - 1
    }
}

fn push_hex(s: &mut String, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..16).rev() {
        s.push(char::from(HEX[((v >> (i * 4)) & 0xF) as usize]));
    }
}

// ---------------------------------------------------------------------------------------------
// Texts.

#[rustfmt::skip]
const FIRST_NAMES: &[&str] = &[
    "anna", "max", "lena", "paul", "emma", "lukas", "sophie", "tom", "julia", "david", "maria",
    "jan", "laura", "felix", "sarah", "ben", "lisa", "noah", "mia", "leon", "chloe", "james",
    "olivia", "lucas", "marco", "giulia", "pierre", "camille", "sofia", "pedro",
];
#[rustfmt::skip]
const LAST_NAMES: &[&str] = &[
    "mueller", "schmidt", "smith", "jones", "martin", "garcia", "rossi", "dubois", "jansen",
    "silva", "brown", "wilson", "weber", "fischer", "moreau", "lopez", "bianchi", "devries",
    "santos", "taylor",
];
const DOMAINS: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "web.de",
    "gmx.de",
    "hotmail.com",
    "icloud.com",
    "example.com",
];
const STREETS: &[&str] = &[
    "Hauptstrasse",
    "Main Street",
    "Rue de la Paix",
    "Calle Mayor",
    "Bahnhofstrasse",
    "High Street",
    "Via Roma",
];
#[rustfmt::skip]
const CITIES: &[&str] = &[
    "Berlin", "London", "Paris", "Madrid", "Munich", "Hamburg", "Rome", "Amsterdam",
];
const AGENTS: &[&str] = &["Maria", "Jonas", "Sarah", "Tom", "Aylin", "Lucas"];

const GREETING_LEADS: &[&str] = &[
    "hi",
    "hello",
    "hey there",
    "good morning",
    "hi, i need some help",
];
const CLOSING_LEADS: &[&str] = &[
    "thanks",
    "thank you so much",
    "great, thanks for your help",
    "perfect thank you",
];
const ACK_LEADS: &[&str] = &[
    "ok",
    "okay thanks",
    "alright",
    "and now?",
    "great",
    "ok what next",
];
const AGENT_REQUEST_LEADS: &[&str] = &[
    "can i talk to a human",
    "i want to speak to a real person",
    "agent please",
];
const AGENT_PHASE_LEADS: &[&str] = &[
    "ok",
    "yes",
    "thanks",
    "it still does not work",
    "the order number is {order}",
    "my email is {email}",
];
const UNRECOGNIZED_INTENTS: &[&str] = &[
    "order_status",
    "greeting",
    "provide_info",
    "affirm",
    "request_refund",
    "tech_support",
];

fn answer_leads(ask: Ask) -> &'static [&'static str] {
    match ask {
        Ask::Email => &[
            "my email is {email}",
            "{email}",
            "it is {email}",
            "sure, {email}",
        ],
        Ask::Phone => &[
            "my number is {phone}",
            "{phone}",
            "you can reach me at {phone}",
        ],
        Ask::OrderId => &[
            "the order number is {order}",
            "{order}",
            "it's {order} i think",
        ],
        Ask::Code => &["the code is {code}", "{code}", "i got {code}"],
        Ask::Confirm => &[
            "yes please",
            "yes that is correct",
            "ok go ahead",
            "no wait",
            "yes",
        ],
        Ask::Name => &["my name is {name}", "{name}"],
        Ask::Date => &[
            "next monday please",
            "tomorrow morning",
            "friday at {hour} would be great",
            "on the {day}th",
        ],
        Ask::Address => &[
            "{street} {num}, {zip} {city}",
            "the new address is {street} {num} {city}",
        ],
        Ask::Zip => &["{zip}", "my postcode is {zip}", "i live in {city}"],
        Ask::Reason => &[
            "it arrived damaged",
            "i changed my mind",
            "wrong size",
            "it never arrived",
            "too expensive",
        ],
        Ask::Generic => &["well", "so basically", "it is about", "the thing is"],
    }
}

fn answer_intent(ask: Ask) -> &'static str {
    match ask {
        Ask::Email => "provide_email",
        Ask::Phone => "provide_phone",
        Ask::OrderId => "provide_order_id",
        Ask::Code => "provide_code",
        Ask::Confirm => "affirm",
        Ask::Name => "provide_name",
        Ask::Date => "provide_date",
        Ask::Address => "provide_address",
        Ask::Zip => "provide_zip",
        Ask::Reason => "provide_reason",
        Ask::Generic => "provide_info",
    }
}

fn prompt_texts(ask: Ask) -> &'static [&'static str] {
    match ask {
        Ask::Email => &[
            "Could you tell me your email address?",
            "What email address did you register with?",
        ],
        Ask::Phone => &[
            "Could you tell me your phone number?",
            "Which phone number should we use?",
        ],
        Ask::OrderId => &[
            "What is your order number? It starts with ORD.",
            "Could you give me the order number?",
        ],
        Ask::Code => &[
            "Please enter the 6-digit code we just sent you.",
            "I have sent you a code. What does it say?",
        ],
        Ask::Confirm => &[
            "Shall I go ahead with that?",
            "Can you confirm this is correct?",
            "Is there anything else I can help you with?",
        ],
        Ask::Name => &["What is your full name?", "May I have your name, please?"],
        Ask::Date => &["Which day would suit you?", "What time works best for you?"],
        Ask::Address => &["What is the new delivery address?"],
        Ask::Zip => &["What is your postcode?", "Where are you located?"],
        Ask::Reason => &[
            "Could you tell me the reason?",
            "May I ask why? This helps us improve.",
        ],
        Ask::Generic => &[
            "Could you tell me a bit more about that?",
            "What exactly would you like to know?",
            "Could you describe the problem in a few words?",
        ],
    }
}

fn bot_texts(kind: NodeKind) -> &'static [&'static str] {
    match kind {
        NodeKind::Prompt => prompt_texts(Ask::Generic),
        NodeKind::Message => &[
            "Sure, I can help you with that.",
            "Thanks, I have noted that.",
            "Your order {order} is on its way and should arrive in {days} days.",
            "Here is what I found for you.",
            "Our opening hours are Monday to Friday, 9am to 6pm.",
            "Okay, thanks for the details.",
        ],
        NodeKind::Action => &[
            "One moment, I am looking that up.",
            "Done! I have updated your details.",
            "I have sent a confirmation to {email}.",
            "Your request has been submitted.",
            "I have created ticket {ticket} for you.",
        ],
        NodeKind::Condition => &[
            "Let me check that for you.",
            "Checking your account status, one moment.",
            "Let me see whether you are eligible.",
        ],
    }
}

const BOT_GREETINGS: &[&str] = &[
    "Hi! How can I help you today?",
    "Hello, I am the virtual assistant. What can I do for you?",
    "Hi there! What can I help you with?",
];
const BOT_FALLBACKS: &[&str] = &[
    "Sorry, I did not understand that.",
    "Sorry, I didn't get that. Could you rephrase it?",
    "I'm not sure I understood. Could you say it differently?",
    "Sorry, I can only help with orders, accounts and deliveries.",
];
const BOT_CLOSINGS: &[&str] = &[
    "You're welcome! Have a great day.",
    "Happy to help. Goodbye!",
    "Glad I could help!",
];
const COMPLETION_SUFFIXES: &[&str] = &[
    " All done!",
    " Is there anything else I can help you with?",
    "",
];
const BOT_HANDOFFS: &[&str] = &[
    "Let me connect you with one of our agents.",
    "I will hand you over to a colleague, one moment please.",
];
const HANDOFF_SYSTEM_TEXT: &str = "Conversation handed over to an agent";
const AGENT_OPENERS: &[&str] = &[
    "Hi, this is {agent} from customer support. How can I help?",
    "Hello, {agent} here. I have read your conversation, let me take a look.",
];
const AGENT_TEXTS: &[&str] = &[
    "Thanks, let me look into that for you.",
    "I have fixed that on our side, could you try again?",
    "Could you confirm the order number for me?",
    "I understand, sorry for the trouble.",
    "You're welcome, have a nice day!",
];

// ---------------------------------------------------------------------------------------------
// Conversations.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    User,
    Bot,
    Agent,
    System,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Bot => "bot",
            Role::Agent => "agent",
            Role::System => "system",
        }
    }
}

/// What the user is saying, which decides the lead phrase and the recognised intent.
#[derive(Clone, Copy)]
enum Utterance<'c> {
    Greeting,
    FlowStart(&'c Flow),
    Answer(Ask),
    Ack,
    Closing,
    RequestAgent,
}

impl Utterance<'_> {
    fn leads(self) -> &'static [&'static str] {
        match self {
            Utterance::Greeting => GREETING_LEADS,
            Utterance::FlowStart(f) => f.leads,
            Utterance::Answer(ask) => answer_leads(ask),
            Utterance::Ack => ACK_LEADS,
            Utterance::Closing => CLOSING_LEADS,
            Utterance::RequestAgent => AGENT_REQUEST_LEADS,
        }
    }

    fn intent(self) -> &'static str {
        match self {
            Utterance::Greeting => "greeting",
            Utterance::FlowStart(_) => "",
            Utterance::Answer(ask) => answer_intent(ask),
            Utterance::Ack => "acknowledge",
            Utterance::Closing => "thanks",
            Utterance::RequestAgent => "request_agent",
        }
    }
}

/// How the bot answers once it understood the user.
#[derive(Clone, Copy)]
enum Reply<'c> {
    Greeting,
    Step {
        flow: &'c Flow,
        step: &'c Step,
        completes: bool,
    },
    Closing,
    Handoff,
}

type Slot = VecDeque<(i64, u32, GenMessage)>;

/// Builds one conversation into `out`, in message order.
struct Conversation<'a> {
    rng: Rng,
    vocab: &'a Vocab,
    tables: &'a Tables,
    label: &'a str,
    bot: &'a str,
    user_id: &'a str,
    channel: Channel,
    session: Option<&'a str>,
    profile: Profile,
    t: i64,
    out: &'a mut Slot,
    text: String,
    style: TextStyle,
    /// The language of the conversation (English in the Zipf style).
    lang: &'static Lang,
    /// Whether the user text being composed asks for something (typed with a "?" at times).
    request: bool,
}

impl<'a> Conversation<'a> {
    fn full(&self) -> bool {
        self.out.len() >= MAX_MESSAGES
    }

    /// A message with the common fields filled in and the current text; advances the clock.
    fn message(&mut self, role: Role) -> GenMessage {
        if !self.out.is_empty() {
            let gap = match role {
                // Bots and the hand-off system answer within seconds; people take longer.
                Role::Bot | Role::System => MIN_GAP_MS + self.rng.below(4_000) as i64,
                Role::User | Role::Agent => self.tables.human_gap_ms.sample(&mut self.rng) as i64,
            };
            self.t += gap;
        }
        let metadata = if self.out.is_empty() && role == Role::User && self.rng.chance(P_METADATA) {
            Some(self.client_metadata())
        } else {
            None
        };
        let idx = self.out.len() + 1;
        let mut id = String::with_capacity(self.label.len() + 5);
        id.push_str("m-");
        id.push_str(self.label);
        id.push('-');
        push_num(&mut id, idx as u64, 2);
        GenMessage {
            id,
            bot_id: self.bot.to_owned(),
            user_id: self.user_id.to_owned(),
            channel: self.channel.as_str().to_owned(),
            role: role.as_str().to_owned(),
            text: self.text.as_str().to_owned(),
            timestamp: format_ts(self.t),
            session_id: self.session.map(str::to_owned),
            flow: None,
            step: None,
            node_id: None,
            node_type: None,
            node_name: None,
            intent: None,
            confidence: None,
            unidentified: None,
            flow_completed: None,
            metadata,
            lang: Some(self.lang.code.to_owned()),
        }
    }

    fn emit(&mut self, m: GenMessage) {
        let idx = self.out.len() as u32 + 1;
        self.out.push_back((self.t, idx, m));
    }

    fn run(&mut self, cat: &'static Catalog, handoff: bool) {
        if self.rng.chance(P_GREETING) {
            self.exchange(Utterance::Greeting, Reply::Greeting);
        }
        let flow_count = if self.rng.chance(P_TWO_FLOWS) { 2 } else { 1 };
        let mut previous = usize::MAX;
        let mut stopped = false;
        for _ in 0..flow_count {
            let mut f = self.pick_flow(cat);
            while f == previous {
                f = self.pick_flow(cat);
            }
            previous = f;
            let flow = &cat.flows[f];
            let steps = flow.steps.len();
            let completed = self.rng.chance(P_FLOW_COMPLETED);
            let last = if completed {
                steps - 1
            } else {
                self.rng.below(steps - 1)
            };
            for (j, step) in flow.steps.iter().enumerate().take(last + 1) {
                let utterance = if j == 0 {
                    Utterance::FlowStart(flow)
                } else {
                    let prev = &flow.steps[j - 1];
                    if prev.kind == NodeKind::Prompt {
                        Utterance::Answer(prev.ask)
                    } else {
                        Utterance::Ack
                    }
                };
                let completes = completed && j == steps - 1;
                self.exchange(
                    utterance,
                    Reply::Step {
                        flow,
                        step,
                        completes,
                    },
                );
                if self.full() {
                    return;
                }
            }
            if !completed && self.rng.chance(P_STOP_AFTER_DROP) {
                stopped = true;
                break;
            }
        }
        if handoff {
            self.handoff();
        } else if !stopped && self.rng.chance(P_CLOSING) {
            self.exchange(Utterance::Closing, Reply::Closing);
        }
    }

    /// A flow to start: any in the Zipf style; one the conversation's language serves in the realistic one.
    fn pick_flow(&mut self, cat: &Catalog) -> usize {
        match self.style {
            TextStyle::Zipf => cat.pick(&mut self.rng),
            TextStyle::Realistic => {
                let (name, _) = realistic::pick_flow(self.lang, &mut self.rng);
                cat.flows
                    .iter()
                    .position(|f| f.name == name)
                    .expect("a language serves hand-written flows only")
            }
        }
    }

    /// One user turn and the bot's answer, possibly preceded by a run of fallbacks.
    fn exchange(&mut self, utterance: Utterance, reply: Reply) {
        if self.full() {
            return;
        }
        let mut repeat = false;
        if self.rng.chance(P_FALLBACK) {
            for fallbacks in 1..=3 {
                if repeat {
                    self.restore_user_text();
                } else if self.style == TextStyle::Realistic {
                    // Something the bot has no flow for.
                    self.text.clear();
                    self.text
                        .push_str(realistic::pick_miss(self.lang, &mut self.rng));
                    realistic::as_typed(&mut self.text, &mut self.rng, true);
                } else {
                    self.user_text(utterance);
                }
                let mut m = self.message(Role::User);
                if self.rng.chance(0.5) {
                    m.intent = Some(self.rng.pick_str(UNRECOGNIZED_INTENTS).to_owned());
                    m.confidence = Some(round2(0.05 + 0.4 * self.rng.f64()));
                }
                self.emit(m);
                if self.full() {
                    return;
                }
                self.text.clear();
                self.text
                    .push_str(self.rng.pick_str(self.lang.bot_fallbacks));
                let mut m = self.message(Role::Bot);
                m.unidentified = Some(true);
                if let Reply::Step { flow, step, .. } = reply {
                    m.flow = Some(flow.name.clone());
                    m.step = Some(step.name.clone());
                }
                self.emit(m);
                if self.full() {
                    return;
                }
                // Users often resend the very same words after a fallback.
                repeat = self.rng.chance(P_REPEAT_TEXT);
                if fallbacks == 3 || !self.rng.chance(P_FALLBACK_AGAIN) {
                    break;
                }
            }
        }
        // After a fallback a realistic user asks for what the bot does serve.
        if repeat && self.style == TextStyle::Zipf {
            self.restore_user_text();
        } else {
            self.user_text(utterance);
        }
        let intent = match utterance {
            Utterance::FlowStart(f) => f.intent.as_str(),
            Utterance::Answer(Ask::Confirm) if self.text.starts_with("no") => "deny",
            u => u.intent(),
        };
        let mut m = self.message(Role::User);
        m.intent = Some(intent.to_owned());
        m.confidence = Some(self.confidence());
        self.emit(m);
        if self.full() {
            return;
        }
        self.bot_reply(reply);
    }

    /// Restores the text of the latest user message into the buffer (it was overwritten by
    /// the bot's fallback text) so a repeat is byte-identical.
    fn restore_user_text(&mut self) {
        if let Some((_, _, m)) = self.out.iter().rev().find(|(_, _, m)| m.role == "user") {
            self.text.clear();
            self.text.push_str(&m.text);
        }
    }

    fn bot_reply(&mut self, reply: Reply) {
        self.text.clear();
        match reply {
            Reply::Greeting | Reply::Closing | Reply::Handoff => {
                let texts = match reply {
                    Reply::Greeting => self.lang.bot_greetings,
                    Reply::Closing => self.lang.bot_closings,
                    _ => self.lang.bot_handoffs,
                };
                self.text.push_str(self.rng.pick_str(texts));
                let m = self.message(Role::Bot);
                self.emit(m);
            }
            Reply::Step {
                flow,
                step,
                completes,
            } => {
                let template = if step.kind == NodeKind::Prompt {
                    self.rng.pick_str((self.lang.prompts)(step.ask))
                } else {
                    self.rng.pick_str((self.lang.bot)(step.kind))
                };
                self.render(template);
                if completes {
                    let suffix = self.rng.pick_str(self.lang.completion_suffixes);
                    self.text.push_str(suffix);
                }
                // Variant 0 is the main path; the others are rarer branches of the same step.
                let variant = if step.variants == 1 || self.rng.chance(0.5) {
                    0
                } else {
                    1 + self.rng.below(step.variants as usize - 1) as u32
                };
                let mut m = self.message(Role::Bot);
                m.flow = Some(flow.name.clone());
                m.step = Some(step.name.clone());
                m.node_id = Some(flow.node_id(step, variant));
                m.node_type = Some(step.kind.as_str().to_owned());
                m.node_name = Some(flow.node_name(step, variant));
                if completes {
                    m.flow_completed = Some(true);
                }
                self.emit(m);
            }
        }
    }

    fn handoff(&mut self) {
        if self.full() {
            return;
        }
        self.exchange(Utterance::RequestAgent, Reply::Handoff);
        if self.full() {
            return;
        }
        self.text.clear();
        self.text.push_str(self.lang.handoff_system);
        let agent = self.rng.below(AGENTS.len());
        let mut m = self.message(Role::System);
        let mut meta = serde_json::Map::new();
        // Keys go in sorted order so the output is the same with or without `preserve_order`.
        meta.insert(
            "agent_id".to_owned(),
            Value::from(format!("agent-{agent:02}")),
        );
        meta.insert("queue".to_owned(), Value::from("support"));
        m.metadata = Some(Value::Object(meta));
        self.emit(m);
        let turns = self.rng.range(2, 6);
        for i in 0..turns {
            if self.full() {
                return;
            }
            if i % 2 == 0 {
                self.text.clear();
                let template = if i == 0 {
                    self.rng.pick_str(self.lang.agent_openers)
                } else {
                    self.rng.pick_str(self.lang.agent_texts)
                };
                let name = AGENTS[agent];
                for (k, part) in template.split("{agent}").enumerate() {
                    if k > 0 {
                        self.text.push_str(name);
                    }
                    self.text.push_str(part);
                }
                let m = self.message(Role::Agent);
                self.emit(m);
            } else {
                let lead = self.rng.pick_str(self.lang.agent_phase);
                self.request = false;
                self.compose_user_text(lead);
                let m = self.message(Role::User);
                self.emit(m);
            }
        }
    }

    fn client_metadata(&mut self) -> Value {
        let mut meta = serde_json::Map::new();
        if self.channel == Channel::Web {
            meta.insert(
                "app_version".to_owned(),
                Value::from(self.profile.app_version),
            );
        }
        meta.insert(
            "locale".to_owned(),
            Value::from(COUNTRIES[self.profile.country].0),
        );
        Value::Object(meta)
    }

    fn confidence(&mut self) -> f64 {
        round2(self.tables.confidence.sample(&mut self.rng))
    }

    fn user_text(&mut self, utterance: Utterance) {
        let leads = match self.style {
            TextStyle::Zipf => utterance.leads(),
            TextStyle::Realistic => self.realistic_leads(utterance),
        };
        let lead = self.rng.pick_str(leads);
        self.request = matches!(utterance, Utterance::FlowStart(_) | Utterance::RequestAgent);
        self.compose_user_text(lead);
    }

    /// What a user of the conversation's language says for `utterance`.
    fn realistic_leads(&self, utterance: Utterance) -> &'static [&'static str] {
        let lang = self.lang;
        match utterance {
            Utterance::Greeting => lang.greetings,
            Utterance::FlowStart(flow) => (lang.flows)()
                .into_iter()
                .find(|(name, _)| *name == flow.name)
                .map_or(flow.leads, |(_, leads)| leads),
            Utterance::Answer(ask) => (lang.answers)(ask),
            Utterance::Ack => lang.acks,
            Utterance::Closing => lang.closings,
            Utterance::RequestAgent => lang.agent_requests,
        }
    }

    /// The lead phrase with its placeholders filled in: as typed in the
    /// realistic style; with Zipf filler words and the odd number, order id
    /// or e-mail address in the Zipf one.
    fn compose_user_text(&mut self, lead: &str) {
        if self.style == TextStyle::Realistic {
            self.text.clear();
            self.render(lead);
            // An answer that is only a value (an e-mail address, a code) is pasted as it is.
            if !lead.starts_with('{') {
                realistic::as_typed(&mut self.text, &mut self.rng, self.request);
            }
            return;
        }
        let target = self.tables.user_text_len.sample(&mut self.rng) as usize;
        self.text.clear();
        self.render(lead);
        while self.text.len() < target {
            if !self.text.is_empty() {
                self.text.push(' ');
            }
            match self.rng.below(1_000) {
                0..=14 => {
                    let n = match self.rng.below(3) {
                        0 => self.rng.range(1, 12),
                        1 => self.rng.range(10, 500),
                        _ => self.rng.range(1_000, 2_030),
                    };
                    push_num(&mut self.text, n as u64, 1);
                }
                15..=19 => self.push_entity("order"),
                20..=23 => self.push_entity("email"),
                _ => {
                    let w = self.vocab.sample(&mut self.rng);
                    self.text.push_str(w);
                }
            }
        }
    }

    /// Appends `template` with `{placeholder}`s expanded to the buffer.
    fn render(&mut self, template: &str) {
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            self.text.push_str(&rest[..open]);
            let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
            self.push_entity(&rest[open + 1..close]);
            rest = rest.get(close + 1..).unwrap_or("");
        }
        self.text.push_str(rest);
    }

    fn push_entity(&mut self, name: &str) {
        let rng = &mut self.rng;
        let s = &mut self.text;
        match name {
            "order" => {
                s.push_str("ORD-");
                push_num(s, rng.range(10_000, 99_999) as u64, 5);
            }
            "ticket" => {
                s.push_str("T-");
                push_num(s, rng.range(100_000, 999_999) as u64, 6);
            }
            "email" => {
                s.push_str(rng.pick_str(FIRST_NAMES));
                s.push('.');
                s.push_str(rng.pick_str(LAST_NAMES));
                if rng.chance(0.5) {
                    push_num(s, rng.range(1, 99) as u64, 2);
                }
                s.push('@');
                s.push_str(rng.pick_str(DOMAINS));
            }
            "phone" => {
                let (_, prefix, extra, _) = *rng.pick(&COUNTRIES);
                s.push_str(prefix);
                s.push(' ');
                push_num(s, rng.range(0, 10usize.pow(extra + 4) - 1) as u64, 4);
                s.push(' ');
                push_num(s, rng.range(0, 9_999) as u64, 4);
            }
            "code" => push_num(s, rng.range(0, 999_999) as u64, 6),
            "name" => {
                for (i, part) in [rng.pick_str(FIRST_NAMES), rng.pick_str(LAST_NAMES)]
                    .into_iter()
                    .enumerate()
                {
                    if i > 0 {
                        s.push(' ');
                    }
                    let mut chars = part.chars();
                    if let Some(c) = chars.next() {
                        s.push(c.to_ascii_uppercase());
                        s.push_str(chars.as_str());
                    }
                }
            }
            "hour" => push_num(s, rng.range(8, 18) as u64, 1),
            "day" => push_num(s, rng.range(4, 28) as u64, 1),
            "days" => push_num(s, rng.range(2, 7) as u64, 1),
            "num" => push_num(s, rng.range(1, 180) as u64, 1),
            "zip" => push_num(s, rng.range(10_000, 99_999) as u64, 5),
            "street" => s.push_str(rng.pick_str(STREETS)),
            "city" => s.push_str(rng.pick_str(CITIES)),
            other => s.push_str(other),
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

// ---------------------------------------------------------------------------------------------
// Streaming.

/// K-way merge over active conversations. Each slot holds one conversation's remaining
/// messages; the heap holds one key per active conversation, so memory is
/// bounded by concurrency, not by the total number of messages.
struct Merge {
    heap: BinaryHeap<Reverse<(i64, u64, u32, usize)>>,
    slots: Vec<Slot>,
    free: Vec<usize>,
}

impl Merge {
    fn take_slot(&mut self) -> usize {
        self.free.pop().unwrap_or_else(|| {
            self.slots.push(VecDeque::new());
            self.slots.len() - 1
        })
    }

    fn activate(&mut self, slot: usize, conv: u64) {
        match self.slots[slot].front() {
            Some(&(ts, idx, _)) => self.heap.push(Reverse((ts, conv, idx, slot))),
            None => self.free.push(slot),
        }
    }

    /// Emits every pending message strictly older than `limit`. Ties on the timestamp are
    /// broken by (conversation, index), which equals id order because ids are fixed-width.
    fn flush_before<F>(&mut self, limit: i64, sink: &mut F) -> ControlFlow<()>
    where
        F: FnMut(GenMessage) -> ControlFlow<()>,
    {
        while let Some(mut top) = self.heap.peek_mut() {
            let Reverse((ts, conv, _, slot)) = *top;
            if ts >= limit {
                break;
            }
            let msgs = &mut self.slots[slot];
            let Some((_, _, msg)) = msgs.pop_front() else {
                PeekMut::pop(top);
                continue;
            };
            match msgs.front() {
                Some(&(next_ts, next_idx, _)) => *top = Reverse((next_ts, conv, next_idx, slot)),
                None => {
                    PeekMut::pop(top);
                    self.free.push(slot);
                }
            }
            sink(msg)?;
        }
        ControlFlow::Continue(())
    }
}

/// Drives the generation; returns the peak number of simultaneously buffered conversations.
fn run<F>(cfg: &GenConfig, mut sink: F) -> usize
where
    F: FnMut(GenMessage) -> ControlFlow<()>,
{
    let vocab = vocab();
    let cat = catalog();
    let tables = tables();
    let default_bots = ["demo".to_owned()];
    let bots: &[String] = if cfg.bots.is_empty() {
        &default_bots
    } else {
        &cfg.bots
    };
    let n = cfg.conversations;
    let end = cfg.end.timestamp_millis();
    let t0 = end - i64::from(cfg.span_days.max(1)) * DAY_MS;
    let t1 = end - MAX_CONVERSATION_MS;
    let diurnal = Diurnal::new(t0);
    let (c0, c1) = (diurnal.intensity(t0), diurnal.intensity(t1));
    // Fixed-width conversation numbers keep lexicographic id order equal to numeric order.
    let width = n.to_string().len().max(6);

    let mut rng = Rng::new(cfg.seed);
    let conv_key = mix64(cfg.seed ^ 0x636F_6E76);
    let mut users = Users::new(cfg.seed, n);
    let mut merge = Merge {
        heap: BinaryHeap::new(),
        slots: Vec::new(),
        free: Vec::new(),
    };
    let mut label = String::with_capacity(width);
    let mut session = String::new();
    let mut x = 0.0f64;
    let mut prev_start = t0;
    for i in 0..n {
        // Sequential uniform order statistics: the starts of a Poisson process conditioned on
        // exactly n arrivals in the window, generated in increasing order without storing them.
        let v = 1.0 - rng.f64();
        x = 1.0 - (1.0 - x) * det_pow(v, 1.0 / (n - i) as f64);
        let start = diurnal
            .time(c0 + x * (c1 - c0))
            .clamp(t0, t1 - 1)
            .max(prev_start);
        prev_start = start;
        if merge.flush_before(start, &mut sink).is_break() {
            return merge.slots.len();
        }

        let conv = i as u64 + 1;
        let bot = &bots[rng.below(bots.len())];
        let user = users.pick(&mut rng, start);
        let explicit = rng.chance(cfg.explicit_session_share);
        let handoff = rng.chance(P_HANDOFF);
        let profile = users.profile(user);
        let user_id = users.user_id(user, profile);
        label.clear();
        push_num(&mut label, conv, width);
        if explicit {
            session.clear();
            session.push_str("s-");
            session.push_str(bot);
            session.push('-');
            session.push_str(&label);
        }

        let lang = match cfg.text {
            TextStyle::Zipf => &realistic::EN,
            TextStyle::Realistic => realistic::lang_of(COUNTRIES[profile.country].0),
        };
        let slot = merge.take_slot();
        let mut c = Conversation {
            rng: Rng::new(conv_key ^ conv.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            vocab,
            tables,
            label: &label,
            bot,
            user_id: &user_id,
            channel: profile.channel,
            session: explicit.then_some(session.as_str()),
            profile,
            t: start,
            out: &mut merge.slots[slot],
            text: String::with_capacity(320),
            style: cfg.text,
            lang,
            request: false,
        };
        c.run(cat, handoff);
        users.last_end[user] = c.t;
        merge.activate(slot, conv);
    }
    let _ = merge.flush_before(i64::MAX, &mut sink);
    // Slots are only created when none is free, so their count is the peak concurrency.
    merge.slots.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{SecondsFormat, TimeZone};
    use std::collections::{BTreeMap, BTreeSet, HashMap};

    fn end() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap()
    }

    fn collect(cfg: &GenConfig) -> Vec<GenMessage> {
        let mut v = Vec::new();
        generate(cfg, |m| v.push(m));
        v
    }

    fn ndjson(cfg: &GenConfig) -> Vec<u8> {
        let mut out = Vec::new();
        let n = write_ndjson(cfg, &mut out).unwrap();
        assert_eq!(n as usize, out.iter().filter(|&&b| b == b'\n').count());
        out
    }

    fn conv_of(m: &GenMessage) -> u64 {
        m.id.split('-').nth(1).unwrap().parse().unwrap()
    }

    fn ms(m: &GenMessage) -> i64 {
        DateTime::parse_from_rfc3339(&m.timestamp)
            .unwrap()
            .timestamp_millis()
    }

    fn fnv1a(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    #[test]
    fn realistic_text_is_five_languages_without_zipf_words_and_its_misses_recur() {
        let cfg = GenConfig {
            text: TextStyle::Realistic,
            ..GenConfig::new(7, 3000, end())
        };
        assert_eq!(ndjson(&cfg), ndjson(&cfg), "deterministic");
        let messages = collect(&cfg);
        let mut langs: BTreeMap<String, usize> = BTreeMap::new();
        for m in &messages {
            *langs.entry(m.lang.clone().unwrap()).or_default() += 1;
        }
        assert_eq!(
            langs.keys().map(String::as_str).collect::<Vec<_>>(),
            ["de", "en", "es", "fr", "pt"]
        );
        assert!(
            langs.values().all(|&n| n * 30 > messages.len()),
            "{langs:?}"
        );
        // No word of the benchmarks' made-up Zipf tail (the short ones can be
        // real words of some language, or a typo of one).
        let made_up: HashSet<&str> = (TOP_WORDS.len()..VOCAB_SIZE)
            .map(|rank| vocab().word(rank))
            .filter(|word| word.len() >= 8)
            .collect();
        let words: HashSet<&str> = messages
            .iter()
            .flat_map(|m| m.text.split(|c: char| !c.is_alphabetic()))
            .collect();
        let found: Vec<&&str> = words.iter().filter(|w| made_up.contains(**w)).collect();
        assert!(found.is_empty(), "Zipf words in realistic text: {found:?}");
        // What users asked before a fallback: a few needs, asked again and again.
        let mut missed: HashMap<String, usize> = HashMap::new();
        for pair in messages.windows(2) {
            if pair[1].unidentified == Some(true) && pair[0].role == "user" {
                let text: String = pair[0]
                    .text
                    .to_lowercase()
                    .chars()
                    .filter(|c| c.is_alphanumeric() || *c == ' ')
                    .collect();
                *missed.entry(text).or_default() += 1;
            }
        }
        let mut counts: Vec<usize> = missed.values().copied().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        assert!(counts.len() > 20 && counts[0] >= 10, "{counts:?}");
        // Order numbers, e-mail addresses and the odd typo are there.
        let all: String = messages
            .iter()
            .map(|m| m.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(all.contains("ORD-") && all.contains('@'));
        assert!(
            words.contains("pasword")
                || words.contains("passowrd")
                || words.contains("passsword")
                || words.contains("ordr")
                || words.contains("oder"),
            "no typo seen"
        );
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let a = ndjson(&GenConfig::new(42, 300, end()));
        let b = ndjson(&GenConfig::new(42, 300, end()));
        let c = ndjson(&GenConfig::new(43, 300, end()));
        assert!(!a.is_empty());
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn output_for_a_seed_is_pinned() {
        // Benchmarks compare runs across versions; any change here breaks that promise.
        // Changed once (issue #16): every message gained `"lang":"en"`; texts, ids and
        // times stayed as they were.
        let out = ndjson(&GenConfig::new(42, 200, end()));
        assert_eq!(fnv1a(&out), GOLDEN_FNV1A, "got {:#018x}", fnv1a(&out));
    }

    const GOLDEN_FNV1A: u64 = 0xec93_2c7f_04a0_e3ef;

    #[test]
    fn messages_serialise_with_required_fields() {
        let cfg = GenConfig::new(5, 1_000, end());
        let out = ndjson(&cfg);
        let text = std::str::from_utf8(&out).unwrap();
        let roles = ["user", "bot", "agent", "system"];
        let channels = ["web", "whatsapp", "facebook", "skype", "telegram", "sms"];
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let obj = v.as_object().unwrap();
            for key in [
                "id",
                "bot_id",
                "user_id",
                "channel",
                "role",
                "text",
                "timestamp",
            ] {
                let s = obj[key]
                    .as_str()
                    .unwrap_or_else(|| panic!("{key} in {line}"));
                assert!(!s.is_empty(), "{key} empty in {line}");
            }
            assert!(obj.values().all(|v| !v.is_null()), "{line}");
            let m: GenMessage = serde_json::from_value(v.clone()).unwrap();
            assert_eq!(serde_json::to_string(&m).unwrap(), line);
            assert!(roles.contains(&m.role.as_str()), "{line}");
            assert!(channels.contains(&m.channel.as_str()), "{line}");
            assert_eq!(m.timestamp.len(), 24, "{line}");
            assert!(m.timestamp.ends_with('Z'), "{line}");
            if let Some(c) = m.confidence {
                assert!(m.intent.is_some() && m.role == "user", "{line}");
                assert!((0.0..=1.0).contains(&c), "{line}");
                assert_eq!((c * 100.0).round() / 100.0, c, "{line}");
            }
            if m.intent.is_some() {
                assert!(m.confidence.is_some(), "{line}");
            }
            if m.unidentified.is_some() {
                assert_eq!(m.unidentified, Some(true));
                assert_eq!(m.role, "bot");
                assert!(m.node_id.is_none(), "{line}");
            }
            if m.flow_completed.is_some() {
                assert_eq!(m.flow_completed, Some(true));
                assert!(m.role == "bot" && m.node_id.is_some(), "{line}");
            }
            if m.node_id.is_some() {
                assert!(m.flow.is_some() && m.step.is_some(), "{line}");
                assert!(m.node_type.is_some() && m.node_name.is_some(), "{line}");
            }
            if let Some(meta) = &m.metadata {
                assert!(meta.is_object(), "{line}");
            }
        }
    }

    #[test]
    fn ids_unique_per_bot_and_sessions_consistent() {
        let mut cfg = GenConfig::new(9, 3_000, end());
        cfg.bots = vec!["alpha".into(), "beta".into(), "gamma".into()];
        cfg.explicit_session_share = 0.2;
        let msgs = collect(&cfg);
        let mut seen = HashSet::new();
        for m in &msgs {
            assert!(seen.insert((m.bot_id.clone(), m.id.clone())), "{}", m.id);
            if let Some(s) = &m.session_id {
                assert_eq!(*s, format!("s-{}-{:06}", m.bot_id, conv_of(m)));
            }
        }
        let bots: BTreeSet<_> = msgs.iter().map(|m| m.bot_id.as_str()).collect();
        assert_eq!(bots.len(), 3);
        // A conversation keeps its bot, user, channel and session on every message.
        let mut conv: HashMap<u64, &GenMessage> = HashMap::new();
        for m in &msgs {
            let first = *conv.entry(conv_of(m)).or_insert(m);
            assert_eq!(
                (
                    &first.bot_id,
                    &first.user_id,
                    &first.channel,
                    &first.session_id
                ),
                (&m.bot_id, &m.user_id, &m.channel, &m.session_id)
            );
        }
    }

    #[test]
    fn timestamps_ordered_and_inside_window() {
        let mut cfg = GenConfig::new(11, 4_000, end());
        cfg.span_days = 7;
        let msgs = collect(&cfg);
        let hi = end().timestamp_millis();
        let lo = hi - 7 * DAY_MS;
        for pair in msgs.windows(2) {
            let (a, b) = (ms(&pair[0]), ms(&pair[1]));
            assert!(a < b || (a == b && pair[0].id < pair[1].id), "{:?}", pair);
        }
        for m in &msgs {
            let t = ms(m);
            assert!((lo..hi).contains(&t), "{}", m.timestamp);
        }
        // Gaps inside a conversation stay within 2..=120 s.
        let mut last: HashMap<u64, i64> = HashMap::new();
        for m in &msgs {
            if let Some(prev) = last.insert(conv_of(m), ms(m)) {
                assert!(
                    (MIN_GAP_MS..=MAX_GAP_MS).contains(&(ms(m) - prev)),
                    "{}",
                    m.id
                );
            }
        }
    }

    #[test]
    fn users_rest_more_than_a_day_between_conversations() {
        // Many conversations in a short span force the rest rule to kick in often.
        let mut cfg = GenConfig::new(3, 20_000, end());
        cfg.span_days = 4;
        cfg.bots = vec!["a".into(), "b".into()];
        let msgs = collect(&cfg);
        let mut spans: BTreeMap<u64, (&GenMessage, i64, i64)> = BTreeMap::new();
        for m in &msgs {
            let t = ms(m);
            let e = spans.entry(conv_of(m)).or_insert((m, t, t));
            e.1 = e.1.min(t);
            e.2 = e.2.max(t);
        }
        type Key<'a> = (&'a str, &'a str, &'a str);
        let mut per_user: HashMap<Key, Vec<(i64, i64)>> = HashMap::new();
        let mut channel_of: HashMap<&str, &str> = HashMap::new();
        for (m, first, last) in spans.values() {
            per_user
                .entry((&m.bot_id, &m.user_id, &m.channel))
                .or_default()
                .push((*first, *last));
            let ch = channel_of.entry(&m.user_id).or_insert(&m.channel);
            assert_eq!(*ch, m.channel, "user {} switched channel", m.user_id);
        }
        let mut repeated = 0;
        for convs in per_user.values_mut() {
            convs.sort_unstable();
            for w in convs.windows(2) {
                repeated += 1;
                assert!(w[1].0 - w[0].1 > DAY_MS, "{w:?}");
            }
        }
        assert!(repeated > 1_000, "{repeated}");
    }

    #[test]
    fn shares_match_the_spec_on_5k_conversations() {
        let msgs = collect(&GenConfig::new(7, 5_000, end()));
        let mut convs: BTreeMap<u64, Vec<&GenMessage>> = BTreeMap::new();
        for m in &msgs {
            convs.entry(conv_of(m)).or_default().push(m);
        }
        assert_eq!(convs.len(), 5_000);
        let share = |num: usize, den: usize| num as f64 / den as f64;

        let bots: Vec<_> = msgs.iter().filter(|m| m.role == "bot").collect();
        let unidentified = bots.iter().filter(|m| m.unidentified == Some(true)).count();
        let u = share(unidentified, bots.len());
        assert!((0.05..=0.10).contains(&u), "unidentified {u}");

        let nodes: BTreeMap<&str, &str> = bots
            .iter()
            .filter_map(|m| Some((m.node_id.as_deref()?, m.node_type.as_deref()?)))
            .collect();
        let prompts = nodes.values().filter(|&&t| t == "prompt").count();
        let p = share(prompts, nodes.len());
        assert!((0.33..=0.47).contains(&p), "prompt node share {p}");
        assert!(nodes.len() > 2_000, "{} distinct nodes", nodes.len());

        let mut entered = BTreeSet::new();
        let mut completed = BTreeSet::new();
        for m in &bots {
            if let (Some(f), Some(_)) = (&m.flow, &m.node_id) {
                entered.insert((conv_of(m), f.as_str()));
                if m.flow_completed == Some(true) {
                    completed.insert((conv_of(m), f.as_str()));
                }
            }
        }
        let c = share(completed.len(), entered.len());
        assert!((0.55..=0.65).contains(&c), "completion {c}");
        let flows_per_conv = share(entered.len(), convs.len());
        assert!((1.2..=1.4).contains(&flows_per_conv), "{flows_per_conv}");

        let users: Vec<_> = msgs.iter().filter(|m| m.role == "user").collect();
        for m in &users {
            assert!((20..=300).contains(&m.text.len()), "{:?}", m.text);
        }
        let conf: Vec<f64> = users.iter().filter_map(|m| m.confidence).collect();
        let low = share(conf.iter().filter(|&&c| c < 0.5).count(), conf.len());
        assert!((0.11..=0.19).contains(&low), "low confidence {low}");

        let mut lens: Vec<usize> = convs.values().map(Vec::len).collect();
        lens.sort_unstable();
        assert!(lens[0] >= 2 && lens[lens.len() - 1] <= MAX_MESSAGES);
        let median = lens[lens.len() / 2];
        assert!((8..=14).contains(&median), "median length {median}");
        for c in convs.values() {
            assert_eq!(c[0].role, "user");
            for w in c.windows(2) {
                if w[0].role == "user" {
                    assert_ne!(w[1].role, "user", "{}", w[1].id);
                }
            }
        }

        let handoffs = convs
            .values()
            .filter(|c| c.iter().any(|m| m.role == "agent"))
            .count();
        let h = share(handoffs, convs.len());
        assert!((0.01..=0.035).contains(&h), "handoff {h}");
        assert!(msgs.iter().any(|m| m.role == "system"));

        let explicit = convs.values().filter(|c| c[0].session_id.is_some()).count();
        let e = share(explicit, convs.len());
        assert!((0.035..=0.065).contains(&e), "explicit sessions {e}");

        let expected = [
            ("web", 0.35),
            ("whatsapp", 0.30),
            ("facebook", 0.15),
            ("skype", 0.08),
            ("telegram", 0.07),
            ("sms", 0.05),
        ];
        for (ch, want) in expected {
            let got = share(
                convs.values().filter(|c| c[0].channel == ch).count(),
                convs.len(),
            );
            assert!((got - want).abs() < 0.035, "{ch}: {got}");
        }

        let mut per_user: HashMap<&str, usize> = HashMap::new();
        for c in convs.values() {
            *per_user.entry(&c[0].user_id).or_default() += 1;
        }
        let returning = per_user.values().filter(|&&n| n >= 2).count();
        assert!(share(returning, per_user.len()) > 0.5, "{returning}");

        let repeats = convs
            .values()
            .filter(|c| {
                let texts: Vec<_> = c
                    .iter()
                    .filter(|m| m.role == "user")
                    .map(|m| &m.text)
                    .collect();
                texts.windows(2).any(|w| w[0] == w[1])
            })
            .count();
        assert!(repeats > 20, "{repeats}");
        assert!(msgs.iter().any(|m| m.text.contains("ORD-")));
        assert!(
            msgs.iter()
                .any(|m| m.role == "user" && m.text.contains('@'))
        );
        assert!(msgs.iter().any(|m| m.user_id.starts_with("+4915")));
        assert!(msgs.iter().any(|m| m.user_id.starts_with("web-")));
        assert!(msgs.iter().any(|m| m.metadata.is_some()));
    }

    #[test]
    fn memory_is_bounded_by_active_conversations() {
        let cfg = GenConfig::new(1, 30_000, end());
        let mut n = 0u64;
        let peak = run(&cfg, |_| {
            n += 1;
            ControlFlow::Continue(())
        });
        assert!(n > 300_000);
        assert!(peak < 100, "peak {peak} buffered conversations");
    }

    #[test]
    fn edge_configs() {
        assert!(collect(&GenConfig::new(1, 0, end())).is_empty());
        let one = collect(&GenConfig::new(1, 1, end()));
        assert!((2..=MAX_MESSAGES).contains(&one.len()));
        let mut cfg = GenConfig::new(1, 50, end());
        cfg.bots.clear();
        cfg.span_days = 0;
        let msgs = collect(&cfg);
        assert!(msgs.iter().all(|m| m.bot_id == "demo"));
        let lo = end().timestamp_millis() - DAY_MS;
        assert!(msgs.iter().all(|m| ms(m) >= lo));
    }

    #[test]
    fn write_errors_are_reported() {
        struct Failing;
        impl Write for Failing {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        assert!(write_ndjson(&GenConfig::new(1, 10, end()), Failing).is_err());
        assert!(write_ndjson(&GenConfig::new(1, 10_000, end()), Failing).is_err());
    }

    #[test]
    fn vocabulary_is_zipf_over_unique_words() {
        let v = vocab();
        assert_eq!(v.spans.len(), VOCAB_SIZE);
        let words: HashSet<&str> = (0..VOCAB_SIZE).map(|r| v.word(r)).collect();
        assert_eq!(words.len(), VOCAB_SIZE);
        assert!(
            words
                .iter()
                .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        );
        let top: Vec<&str> = (0..200).map(|r| v.word(r)).collect();
        for w in [
            "i", "my", "the", "order", "password", "reset", "refund", "phone", "help",
        ] {
            assert!(top.contains(&w), "{w}");
        }
        assert!(TOP_WORDS.iter().collect::<HashSet<_>>().len() >= 200);
        let mut rng = Rng::new(1);
        let mut counts = vec![0u32; VOCAB_SIZE];
        let n = 1_000_000;
        for _ in 0..n {
            counts[v.sample_rank(&mut rng)] += 1;
        }
        let h: f64 = (1..=VOCAB_SIZE).map(|r| 1.0 / r as f64).sum();
        for rank in [0usize, 1, 9, 99] {
            let want = 1.0 / ((rank + 1) as f64 * h);
            let got = f64::from(counts[rank]) / f64::from(n);
            assert!(
                (got / want - 1.0).abs() < 0.05,
                "rank {rank}: {got} vs {want}"
            );
        }
        assert!(counts[VOCAB_SIZE / 2..].iter().any(|&c| c > 0));
    }

    #[test]
    fn catalog_has_200_flows_and_about_5000_nodes() {
        let cat = catalog();
        assert_eq!(cat.flows.len(), FLOW_COUNT);
        assert_eq!(cat.flows[0].name, "password-reset");
        assert_eq!(cat.flows[41].name, "flow-0042");
        let names: HashSet<_> = cat.flows.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names.len(), FLOW_COUNT);
        let mut ids = HashSet::new();
        let mut prompts = 0;
        for f in &cat.flows {
            assert!((3..=8).contains(&f.steps.len()), "{}", f.name);
            for s in &f.steps {
                for v in 0..s.variants {
                    assert!(ids.insert(f.node_id(s, v)));
                    prompts += usize::from(s.kind == NodeKind::Prompt);
                }
            }
        }
        assert!((4_000..=6_000).contains(&ids.len()), "{}", ids.len());
        let p = prompts as f64 / ids.len() as f64;
        assert!((0.35..=0.45).contains(&p), "{p}");
        let f = &cat.flows[41];
        assert_eq!(f.node_id(&f.steps[0], 0), "n-0042-1");
        assert_eq!(
            f.node_name(&f.steps[0], 0),
            format!("{} 42.1", f.steps[0].kind.title())
        );
        let reset = &cat.flows[0];
        assert_eq!(reset.node_name(&reset.steps[0], 0), "Ask email");
        assert_eq!(reset.steps[0].kind, NodeKind::Prompt);
    }

    #[test]
    fn timestamps_format_like_chrono() {
        let mut rng = Rng::new(5);
        for _ in 0..10_000 {
            let ms = rng.below(4_102_444_800_000) as i64;
            let want = DateTime::from_timestamp_millis(ms)
                .unwrap()
                .to_rfc3339_opts(SecondsFormat::Millis, true);
            assert_eq!(format_ts(ms), want);
        }
        assert_eq!(format_ts(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn deterministic_math_matches_std() {
        let mut rng = Rng::new(8);
        for _ in 0..10_000 {
            let x = rng.f64() * 50.0 + 1e-9;
            assert!(
                (det_ln(x) - x.ln()).abs() <= 1e-14 * x.ln().abs().max(1.0),
                "{x}"
            );
            let y = rng.f64() * 80.0 - 40.0;
            assert!((det_exp(y) / y.exp() - 1.0).abs() < 1e-14, "{y}");
        }
        assert_eq!(det_exp(0.0), 1.0);
        assert_eq!(det_ln(1.0), 0.0);
        assert!(det_ln(1e-310).is_finite());
    }

    #[test]
    fn rng_is_xoshiro256_starstar() {
        // Reference: first output of xoshiro256** for state [1, 2, 3, 4].
        let mut r = Rng { s: [1, 2, 3, 4] };
        assert_eq!(r.next_u64(), 11_520);
        assert_eq!(r.next_u64(), 0);
        assert_eq!(r.next_u64(), 1_509_978_240);
    }

    #[test]
    #[ignore = "benchmark; run with --release -- --ignored --nocapture"]
    fn throughput() {
        let _ = (vocab(), catalog(), tables());
        let cfg = GenConfig::new(1, 100_000, end());
        let mut out = Vec::new();
        let t = std::time::Instant::now();
        let n = write_ndjson(&cfg, &mut out).unwrap();
        let el = t.elapsed().as_secs_f64();
        println!(
            "write_ndjson: {n} messages, {} MB in {el:.2} s = {:.0} messages/s",
            out.len() / 1_000_000,
            n as f64 / el
        );
    }
}
