//! Redaction at ingest: what users type that must never be stored.
//!
//! Each detector finds one kind of personal data in text and replaces every
//! match with its name in brackets (`[card]`, `[email]`, `[order_ref]`). It runs
//! on validated items, before anything is stored, indexed, logged or archived:
//! message text and metadata, trace events' action and detail. The built-in
//! detectors check what a pattern alone can't (the Luhn digit of a card, the
//! mod-97 check of an IBAN, the octets of an address), so order numbers,
//! timestamps and version strings stay. `docs/privacy.md` lists the rules.

use regex::Regex;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A built-in detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// Payment card numbers (13–19 digits, spaces or dashes between) passing the Luhn check.
    Card,
    Email,
    /// International (`+…`, `00…`) and common national formats (a trunk `0`, `(555) 123-4567`).
    Phone,
    /// IBANs passing the ISO 13616 mod-97 check, grouped or not.
    Iban,
    /// IPv4 and IPv6 addresses.
    Ip,
}

impl Builtin {
    pub const ALL: [Builtin; 5] = [
        Builtin::Card,
        Builtin::Email,
        Builtin::Phone,
        Builtin::Iban,
        Builtin::Ip,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Builtin::Card => "card",
            Builtin::Email => "email",
            Builtin::Phone => "phone",
            Builtin::Iban => "iban",
            Builtin::Ip => "ip",
        }
    }

    pub fn parse(name: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.name() == name)
    }

    /// The order detectors run in: the most specific first, so a match is
    /// named by what it is (an e-mail's digits are not a phone).
    fn rank(self) -> usize {
        match self {
            Builtin::Email => 0,
            Builtin::Iban => 1,
            Builtin::Card => 2,
            Builtin::Ip => 3,
            Builtin::Phone => 4,
        }
    }

    /// Candidates: found by the pattern, then checked by [`Builtin::accepts`].
    fn pattern(self) -> &'static str {
        match self {
            Builtin::Card => r"\d(?:[ -]?\d){12,18}",
            Builtin::Email => {
                r"(?i)[a-z0-9._%+-]+@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.[a-z]{2,63}"
            }
            Builtin::Phone => r"(?:\+|\(\d)?\d[\d ()./-]{5,22}\d",
            Builtin::Iban => r"(?i)[a-z]{2}\d{2}(?: ?[a-z0-9]){11,30}",
            Builtin::Ip => {
                r"(?i)\d{1,3}(?:\.\d{1,3}){3}|[0-9a-f]{0,4}(?:::?[0-9a-f]{0,4}){2,8}(?:\.\d{1,3}){0,3}"
            }
        }
    }

    /// A cheap test that `text` may hold a match at all.
    fn may_match(self, text: &str) -> bool {
        match self {
            Builtin::Email => text.contains('@'),
            Builtin::Ip => {
                text.bytes().any(|b| b.is_ascii_digit())
                    && (text.contains('.') || text.contains(':'))
            }
            _ => text.bytes().any(|b| b.is_ascii_digit()),
        }
    }

    /// The part of `candidate` (a prefix ending at a separator, or all of
    /// it) that is what this detector looks for, if any.
    fn accepts(self, candidate: &str) -> Option<usize> {
        match self {
            Builtin::Email => Some(candidate.len()),
            Builtin::Card => longest_prefix(candidate, |part| {
                let digits = digits(part);
                (13..=19).contains(&digits.len()) && luhn(&digits)
            }),
            Builtin::Iban => longest_prefix(candidate, iban),
            Builtin::Phone => longest_prefix(candidate, phone),
            Builtin::Ip => {
                let trimmed = candidate.trim_end_matches(['.', ':']);
                let address = trimmed.parse::<Ipv4Addr>().is_ok()
                    || (trimmed.contains("::") || trimmed.matches(':').count() == 7)
                        && trimmed.parse::<Ipv6Addr>().is_ok();
                address.then_some(trimmed.len())
            }
        }
    }
}

/// The longest prefix of `candidate` that ends where a group ends (before a
/// separator, or at the end) and passes `check`: "4111 1111 1111 1111 12"
/// is a card followed by a number.
fn longest_prefix(candidate: &str, check: impl Fn(&str) -> bool) -> Option<usize> {
    let ends = candidate
        .char_indices()
        .filter(|(_, c)| !c.is_ascii_alphanumeric())
        .map(|(at, _)| at)
        .chain(std::iter::once(candidate.len()));
    let mut ends: Vec<usize> = ends.collect();
    ends.sort_unstable_by(|a, b| b.cmp(a));
    ends.dedup();
    ends.into_iter()
        .map(|end| candidate[..end].trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
        .find(|part| !part.is_empty() && check(part))
        .map(str::len)
}

fn digits(text: &str) -> Vec<u8> {
    text.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect()
}

/// The Luhn check of a card number's digits.
fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(at, &d)| {
            let d = d as u32;
            if at % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// An IBAN: country letters, check digits, 11–30 more letters or digits
/// (spaces between groups), and the mod-97 remainder 1.
fn iban(text: &str) -> bool {
    let compact: Vec<u8> = text
        .bytes()
        .filter(|b| *b != b' ')
        .map(|b| b.to_ascii_uppercase())
        .collect();
    if !(15..=34).contains(&compact.len())
        || !compact[..2].iter().all(u8::is_ascii_uppercase)
        || !compact[2..4].iter().all(u8::is_ascii_digit)
        || !compact.iter().all(u8::is_ascii_alphanumeric)
    {
        return false;
    }
    let rearranged = compact[4..].iter().chain(&compact[..4]);
    let mut remainder: u32 = 0;
    for &b in rearranged {
        let value = if b.is_ascii_digit() {
            (b - b'0') as u32
        } else {
            (b - b'A') as u32 + 10
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

/// A phone number: `+` or `00` and 8–15 digits; or a national number with a
/// trunk `0` (10–11 digits), or North American (`(555) 123-4567`,
/// `555-123-4567`, `555.123.4567`, a leading `1` allowed). Plain runs of digits
/// without `+` or `0` (order numbers) and dates (8 digits) are not phones.
fn phone(text: &str) -> bool {
    let digits = digits(text);
    if text.starts_with('+') {
        return (8..=15).contains(&digits.len());
    }
    if text.starts_with("00") {
        return (10..=15).contains(&digits.len());
    }
    if text.starts_with('0') {
        return (10..=11).contains(&digits.len());
    }
    let groups: Vec<usize> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .map(str::len)
        .collect();
    let separated = |sep: &[char]| {
        text.chars()
            .filter(|c| !c.is_ascii_digit())
            .all(|c| sep.contains(&c))
    };
    match groups.as_slice() {
        [3, 3, 4] | [1, 3, 3, 4] => {
            separated(&[' ', '-', '.', '(', ')'])
                && (text.contains('(') || separated(&['-', '.']) || separated(&[' ']))
                && (text.matches('(').count() == text.matches(')').count())
        }
        _ => false,
    }
}

/// One detector: built-in or a configured pattern.
#[derive(Debug)]
struct Detector {
    name: String,
    regex: Regex,
    /// `None` for a configured pattern: every match counts.
    builtin: Option<Builtin>,
}

impl Detector {
    fn rank(&self) -> usize {
        // Configured patterns first: they name what the operator knows.
        self.builtin.map_or(0, |b| 1 + b.rank())
    }
}

/// A configured pattern (`privacy.patterns`).
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    pub name: String,
    pub regex: String,
}

/// Why a redaction setting is refused (the config names its key).
pub type RedactError = String;

/// What is redacted, for every bot and per bot, and how often each detector
/// matched (for `/metrics`).
#[derive(Debug, Clone)]
pub struct Redaction {
    detectors: Arc<Vec<Detector>>,
    counts: Arc<Vec<AtomicU64>>,
    /// Positions in `detectors`, in the order they run.
    default: Vec<usize>,
    bots: BTreeMap<String, Vec<usize>>,
}

/// One bot's (or every bot's) settings: built-in detectors and patterns.
#[derive(Debug, Clone, Default)]
pub struct RedactChoice {
    pub builtins: Vec<Builtin>,
    pub patterns: Vec<Pattern>,
}

impl Redaction {
    /// Nothing redacted.
    pub fn none() -> Redaction {
        Redaction::new(&RedactChoice::default(), &BTreeMap::new()).expect("no detectors")
    }

    /// `default` for every bot, `bots` for those named; a pattern that doesn't
    /// compile is an error naming it.
    pub fn new(
        default: &RedactChoice,
        bots: &BTreeMap<String, RedactChoice>,
    ) -> Result<Redaction, RedactError> {
        let mut detectors: Vec<Detector> = Builtin::ALL
            .iter()
            .map(|&b| Detector {
                name: b.name().to_string(),
                regex: Regex::new(b.pattern()).expect("the built-in patterns compile"),
                builtin: Some(b),
            })
            .collect();
        let mut pick = |choice: &RedactChoice| -> Result<Vec<usize>, RedactError> {
            let mut picked: Vec<usize> = Vec::new();
            for builtin in &choice.builtins {
                let at = detectors
                    .iter()
                    .position(|d| d.builtin == Some(*builtin))
                    .expect("every built-in is a detector");
                picked.push(at);
            }
            for pattern in &choice.patterns {
                let regex = Regex::new(&pattern.regex)
                    .map_err(|err| format!("pattern {:?} does not compile: {err}", pattern.name))?;
                let at = match detectors
                    .iter()
                    .position(|d| d.builtin.is_none() && d.name == pattern.name)
                {
                    Some(at) if detectors[at].regex.as_str() == regex.as_str() => at,
                    Some(_) => {
                        return Err(format!(
                            "pattern {:?} is defined twice with different regexes",
                            pattern.name
                        ));
                    }
                    None => {
                        detectors.push(Detector {
                            name: pattern.name.clone(),
                            regex,
                            builtin: None,
                        });
                        detectors.len() - 1
                    }
                };
                picked.push(at);
            }
            picked.sort_unstable();
            picked.dedup();
            Ok(picked)
        };
        let default_picked = pick(default)?;
        let mut bot_picked = BTreeMap::new();
        for (bot, choice) in bots {
            bot_picked.insert(bot.clone(), pick(choice)?);
        }
        let order = |picked: &mut Vec<usize>, detectors: &[Detector]| {
            picked.sort_by_key(|&at| (detectors[at].rank(), at));
        };
        let mut default_picked = default_picked;
        order(&mut default_picked, &detectors);
        for picked in bot_picked.values_mut() {
            order(picked, &detectors);
        }
        let counts = detectors.iter().map(|_| AtomicU64::new(0)).collect();
        Ok(Redaction {
            detectors: Arc::new(detectors),
            counts: Arc::new(counts),
            default: default_picked,
            bots: bot_picked,
        })
    }

    /// The detectors that run for `bot`, by name, in order.
    pub fn names(&self, bot: &str) -> Vec<&str> {
        self.picked(bot)
            .iter()
            .map(|&at| self.detectors[at].name.as_str())
            .collect()
    }

    fn picked(&self, bot: &str) -> &[usize] {
        self.bots.get(bot).unwrap_or(&self.default)
    }

    /// `text` with every match of `bot`'s detectors replaced by `[name]`;
    /// `None` when nothing matched (the text is kept as it is).
    pub fn redact(&self, bot: &str, text: &str) -> Option<String> {
        let mut changed: Option<String> = None;
        for &at in self.picked(bot) {
            let detector = &self.detectors[at];
            let current = changed.as_deref().unwrap_or(text);
            if let Some(builtin) = detector.builtin
                && !builtin.may_match(current)
            {
                continue;
            }
            if let Some((redacted, matches)) = replace(detector, current) {
                self.counts[at].fetch_add(matches, Ordering::Relaxed);
                changed = Some(redacted);
            }
        }
        changed
    }

    /// Redacts `text` in place; whether it changed.
    pub fn redact_in_place(&self, bot: &str, text: &mut String) -> bool {
        match self.redact(bot, text) {
            Some(redacted) => {
                *text = redacted;
                true
            }
            None => false,
        }
    }

    /// Redacts every string inside a JSON document (keys stay), in place.
    pub fn redact_json(&self, bot: &str, value: &mut serde_json::Value) -> bool {
        use serde_json::Value;
        match value {
            Value::String(text) => self.redact_in_place(bot, text),
            // A card or phone number sent as a JSON number.
            Value::Number(number) => match self.redact(bot, &number.to_string()) {
                Some(redacted) => {
                    *value = Value::String(redacted);
                    true
                }
                None => false,
            },
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, item| self.redact_json(bot, item) | changed),
            Value::Object(map) => map
                .values_mut()
                .fold(false, |changed, item| self.redact_json(bot, item) | changed),
            _ => false,
        }
    }

    /// Redacts the strings of a JSON document given as text (metadata, a
    /// trace's detail), in place. It is parsed only when a detector may match
    /// or it holds escapes (which could hide a match from the raw text).
    pub fn redact_json_text(&self, bot: &str, json: &mut String) -> bool {
        let worth = json.contains('\\')
            || self.picked(bot).iter().any(|&at| {
                let detector = &self.detectors[at];
                match detector.builtin {
                    Some(builtin) => builtin.may_match(json),
                    None => detector.regex.is_match(json),
                }
            });
        if !worth {
            return false;
        }
        let Ok(mut value) = serde_json::from_str::<serde_json::Value>(json) else {
            return false;
        };
        if !self.redact_json(bot, &mut value) {
            return false;
        }
        *json = value.to_string();
        true
    }

    /// Matches so far per detector name (every detector configured anywhere).
    pub fn counts(&self) -> Vec<(String, u64)> {
        let used = |at: &usize| {
            self.default.contains(at) || self.bots.values().any(|picked| picked.contains(at))
        };
        (0..self.detectors.len())
            .filter(used)
            .map(|at| {
                (
                    self.detectors[at].name.clone(),
                    self.counts[at].load(Ordering::Relaxed),
                )
            })
            .collect()
    }
}

/// `text` with `detector`'s accepted matches replaced, and how many there were.
fn replace(detector: &Detector, text: &str) -> Option<(String, u64)> {
    let mut out = String::new();
    let mut copied = 0;
    let mut matches = 0;
    let mut from = 0;
    while from < text.len()
        && let Some(found) = detector.regex.find_at(text, from)
    {
        let start = found.start();
        let accepted = match detector.builtin {
            None => Some(found.len()).filter(|len| *len > 0),
            Some(builtin) => accept(builtin, text, start, found.as_str()),
        };
        match accepted {
            Some(len) => {
                out.push_str(&text[copied..start]);
                out.push('[');
                out.push_str(&detector.name);
                out.push(']');
                copied = start + len;
                from = copied;
                matches += 1;
            }
            // A custom pattern's empty match: go on one character later.
            None if detector.builtin.is_none() => {
                from = start + text[start..].chars().next().map_or(1, char::len_utf8);
            }
            // Go on after the word the rejected match starts in, so a long run
            // of digits is scanned once, not once per position.
            None => from = next_word(text, start),
        }
    }
    (matches > 0).then(|| {
        out.push_str(&text[copied..]);
        (out, matches)
    })
}

/// The length of what `builtin` finds in `candidate` (found at `start` of
/// `text`), if it is one and stands alone: not inside a longer word or number.
fn accept(builtin: Builtin, text: &str, start: usize, candidate: &str) -> Option<usize> {
    if builtin != Builtin::Email
        && text[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || joins(builtin, c))
    {
        return None;
    }
    // Nor the tail of a longer group of numbers ("DE89 3704 0044 …" holds no
    // phone starting at "0044").
    if matches!(builtin, Builtin::Card | Builtin::Phone | Builtin::Iban) {
        let mut before = text[..start].chars().rev();
        if let (Some(separator), Some(digit)) = (before.next(), before.next())
            && matches!(separator, ' ' | '-' | '.')
            && digit.is_ascii_digit()
        {
            return None;
        }
    }
    let len = builtin.accepts(candidate).filter(|&len| len > 0)?;
    let rest = &text[start + len..];
    let continues = rest.chars().next().is_some_and(|next| {
        next.is_alphanumeric()
            || (matches!(next, '.' | '-' | '/' | ':')
                && rest[next.len_utf8()..].starts_with(|c: char| c.is_ascii_digit()))
    });
    (builtin == Builtin::Email || !continues).then_some(len)
}

/// Whether a character before a match makes it part of something longer:
/// "v1.2.3.4" or "10.1.2.3.4" is no address, "+123…" or "3.1415…" no card.
fn joins(builtin: Builtin, before: char) -> bool {
    match builtin {
        Builtin::Ip => matches!(before, '.' | ':'),
        _ => matches!(before, '+' | '.' | '/' | '-'),
    }
}

/// The position after the first separator following `start`'s character.
fn next_word(text: &str, start: usize) -> usize {
    let first = text[start..].chars().next().map_or(1, char::len_utf8);
    text[start + first..]
        .char_indices()
        .find(|(_, c)| !c.is_alphanumeric())
        .map_or(text.len(), |(at, c)| start + first + at + c.len_utf8())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Redaction {
        Redaction::new(
            &RedactChoice {
                builtins: Builtin::ALL.to_vec(),
                patterns: vec![Pattern {
                    name: "order_ref".into(),
                    regex: "ORD-[0-9]{6}".into(),
                }],
            },
            &BTreeMap::new(),
        )
        .unwrap()
    }

    fn redacted(text: &str) -> String {
        all().redact("b", text).unwrap_or_else(|| text.to_string())
    }

    #[test]
    fn each_detector_replaces_what_it_finds() {
        for (text, want) in [
            (
                "my card is 4111 1111 1111 1111 thanks",
                "my card is [card] thanks",
            ),
            ("card 4111-1111-1111-1111", "card [card]"),
            ("4012888888881881", "[card]"),
            ("amex 3782 822463 10005.", "amex [card]."),
            ("card 4111 1111 1111 1111 12/25", "card [card] 12/25"),
            (
                "write to Jane.Doe+bot@example.co.uk please",
                "write to [email] please",
            ),
            ("call +44 20 7946 0958 now", "call [phone] now"),
            ("call +1 (555) 123-4567", "call [phone]"),
            ("ruf 030 12345678 an", "ruf [phone] an"),
            ("mobile 07911 123456", "mobile [phone]"),
            ("06.12.34.56.78", "[phone]"),
            ("(555) 123-4567 or 555-123-4567", "[phone] or [phone]"),
            ("0049 30 1234567", "[phone]"),
            (
                "IBAN DE89 3704 0044 0532 0130 00 please",
                "IBAN [iban] please",
            ),
            ("GB82WEST12345698765432", "[iban]"),
            ("from 192.168.1.20, again", "from [ip], again"),
            ("v6 2001:db8::8a2e:370:7334 and ::1", "v6 [ip] and [ip]"),
            ("ref ORD-123456 ok", "ref [order_ref] ok"),
        ] {
            assert_eq!(redacted(text), want, "{text}");
        }
    }

    #[test]
    fn lookalikes_stay() {
        for text in [
            "order 123456789 shipped",
            "order #48213 and ORD-12345",
            "4111 1111 1111 1112",
            "1234567812345678",
            "2024-05-01T12:30:00Z",
            "at 12:30:00 on 2024-05-01",
            "05/01/2024 or 01.05.2024",
            "version 1.2.3 and v2.10.4.1 and 10.0.19041.1",
            "tracking 1Z999AA10123456784",
            "DE89 3704 0044 0532 0130 09",
            "call me at noon",
            "an @mention and user@localhost",
            "999.1.1.1",
            "pi is 3.14159265358979",
            "5551234567",
        ] {
            assert_eq!(redacted(text), text, "{text}");
        }
    }

    #[test]
    fn bots_choose_their_detectors_and_matches_are_counted() {
        let mut bots = BTreeMap::new();
        bots.insert(
            "mail-only".to_string(),
            RedactChoice {
                builtins: vec![Builtin::Email],
                patterns: Vec::new(),
            },
        );
        let redaction = Redaction::new(
            &RedactChoice {
                builtins: vec![Builtin::Card],
                patterns: Vec::new(),
            },
            &bots,
        )
        .unwrap();
        let text = "a@b.io 4111111111111111";
        assert_eq!(redaction.redact("x", text).unwrap(), "a@b.io [card]");
        assert_eq!(
            redaction.redact("mail-only", text).unwrap(),
            "[email] 4111111111111111"
        );
        assert_eq!(redaction.redact("x", "nothing here"), None);
        let counts: BTreeMap<String, u64> = redaction.counts().into_iter().collect();
        assert_eq!(counts["card"], 1);
        assert_eq!(counts["email"], 1);
        assert!(!counts.contains_key("phone"));
        let mut json = serde_json::json!({"note": ["mail a@b.io"], "n": 4111111111111111u64});
        assert!(redaction.redact_json("mail-only", &mut json));
        assert_eq!(json["note"][0], "mail [email]");
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let err = Redaction::new(
            &RedactChoice {
                builtins: Vec::new(),
                patterns: vec![Pattern {
                    name: "broken".into(),
                    regex: "(".into(),
                }],
            },
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(err.contains("broken"), "{err}");
    }
}
