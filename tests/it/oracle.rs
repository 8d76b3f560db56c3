//! The oracle: what the server should answer, computed by a plain scan of the
//! generated messages, written from the contract (API.md) without calling the
//! crate's sessioniser, tokenizer or query parser. Generated messages say they
//! are English (`lang: "en"`), so a word matches its English inflections: the
//! oracle compares words by their Snowball English stem (the `frostem` crate,
//! the reference implementation, not the crate's analysis).

use crate::common::{Rng, micros};
use convlog_gen::GenMessage;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One ingested message, reduced to what searches look at.
#[derive(Debug, Clone)]
pub struct Msg {
    pub bot: String,
    pub id: String,
    pub user: String,
    pub channel: String,
    pub role: String,
    /// Interned words of the text, in order (see [`World::word`]).
    pub tokens: Vec<u32>,
    pub ts: i64,
    pub flow: Option<String>,
    pub step: Option<String>,
    pub node_id: Option<String>,
    pub node_type: Option<String>,
    pub intent: Option<String>,
    pub flow_completed: bool,
    pub unidentified: bool,
    pub confidence: Option<f64>,
    pub text: String,
}

/// One conversation (session) with the summary the filters need.
#[derive(Debug, Clone)]
pub struct Conv {
    pub bot: String,
    pub channel: String,
    /// Indices into [`World::msgs`], in time order.
    pub msgs: Vec<usize>,
    pub started: i64,
    pub last: i64,
    /// Every message time, ascending.
    pub times: Vec<i64>,
    pub flows: BTreeSet<String>,
    pub steps: BTreeSet<(String, String)>,
    pub nodes: BTreeSet<String>,
    pub prompts: BTreeSet<String>,
    pub intents: BTreeSet<String>,
    pub dropoff: Option<(String, Option<String>)>,
    /// The built-in tags the contract defines, evaluated at the time the world was built.
    pub tags: BTreeSet<String>,
    /// The server's numeric conversation id (`c_<hex>`), once learned.
    pub server_id: u64,
}

/// The generated data set, sessionised.
pub struct World {
    pub msgs: Vec<Msg>,
    pub convs: Vec<Conv>,
    /// English stem → id.
    vocabulary: HashMap<String, u32>,
    /// Id → the first spelling seen of its stem (what queries type).
    words: Vec<String>,
}

/// The English Snowball stem of a lowercased word.
pub fn stem(word: &str) -> String {
    frostem::Stemmer::new(frostem::Algorithm::English)
        .stem(word)
        .into_owned()
}

/// Session timeout of a channel under the default configuration.
fn timeout(channel: &str) -> i64 {
    const MINUTE: i64 = 60_000_000;
    match channel {
        "web" | "whatsapp" => 24 * 60 * MINUTE,
        _ => 30 * MINUTE,
    }
}

/// The contract's words: maximal runs of letters and digits, compared case-insensitively.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.chars().flat_map(char::to_lowercase).collect())
        .collect()
}

impl World {
    /// Sessionises and summarises `messages` (given in ingest order).
    pub fn new(messages: &[GenMessage]) -> World {
        let mut world = World {
            msgs: Vec::with_capacity(messages.len()),
            convs: Vec::new(),
            vocabulary: HashMap::new(),
            words: Vec::new(),
        };
        for m in messages {
            let tokens = words(&m.text)
                .into_iter()
                .map(|w| world.intern(w))
                .collect();
            world.msgs.push(Msg {
                bot: m.bot_id.clone(),
                id: m.id.clone(),
                user: m.user_id.clone(),
                channel: m.channel.to_lowercase(),
                role: m.role.clone(),
                tokens,
                ts: micros(&m.timestamp),
                flow: m.flow.clone(),
                step: m.step.clone(),
                node_id: m.node_id.clone(),
                node_type: m.node_type.clone(),
                intent: m.intent.clone(),
                flow_completed: m.flow_completed == Some(true),
                unidentified: m.unidentified == Some(true),
                confidence: m.confidence,
                text: m.text.clone(),
            });
        }

        // Explicit sessions: (bot, session_id). The rest: runs per (bot, user, channel) split at gaps over the timeout.
        let mut explicit: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
        let mut timed: BTreeMap<(&str, &str, &str), Vec<usize>> = BTreeMap::new();
        for (i, m) in messages.iter().enumerate() {
            let msg = &world.msgs[i];
            match &m.session_id {
                Some(session) => explicit.entry((&msg.bot, session)).or_default().push(i),
                None => timed
                    .entry((&msg.bot, &msg.user, &msg.channel))
                    .or_default()
                    .push(i),
            }
        }
        let mut groups: Vec<Vec<usize>> = explicit.into_values().collect();
        for ((_, _, channel), mut run) in timed {
            run.sort_by_key(|&i| (world.msgs[i].ts, i));
            let mut current: Vec<usize> = Vec::new();
            for i in run {
                if let Some(&prev) = current.last()
                    && world.msgs[i].ts - world.msgs[prev].ts > timeout(channel)
                {
                    groups.push(std::mem::take(&mut current));
                }
                current.push(i);
            }
            groups.push(current);
        }
        for mut group in groups {
            group.sort_by_key(|&i| (world.msgs[i].ts, i));
            let conv = world.summarise(group);
            world.convs.push(conv);
        }
        world
    }

    fn intern(&mut self, word: String) -> u32 {
        let stem = stem(&word);
        if let Some(&id) = self.vocabulary.get(&stem) {
            return id;
        }
        let id = self.words.len() as u32;
        self.words.push(word);
        self.vocabulary.insert(stem, id);
        id
    }

    /// The id of a query word: the id of its stem, if any message has it.
    fn id_of(&self, word: &str) -> Option<u32> {
        self.vocabulary.get(&stem(word)).copied()
    }

    /// The text of an interned word.
    pub fn word(&self, id: u32) -> &str {
        &self.words[id as usize]
    }

    fn summarise(&self, msgs: Vec<usize>) -> Conv {
        let first = &self.msgs[msgs[0]];
        let mut conv = Conv {
            bot: first.bot.clone(),
            channel: first.channel.clone(),
            started: first.ts,
            last: self.msgs[*msgs.last().unwrap()].ts,
            times: msgs.iter().map(|&i| self.msgs[i].ts).collect(),
            flows: BTreeSet::new(),
            steps: BTreeSet::new(),
            nodes: BTreeSet::new(),
            prompts: BTreeSet::new(),
            intents: BTreeSet::new(),
            dropoff: None,
            tags: BTreeSet::new(),
            msgs,
            server_id: 0,
        };
        let mut last_flow: Option<&Msg> = None;
        for &i in &conv.msgs {
            let m = &self.msgs[i];
            if let Some(flow) = &m.flow {
                conv.flows.insert(flow.clone());
                if let Some(step) = &m.step {
                    conv.steps.insert((flow.clone(), step.clone()));
                }
                last_flow = Some(m);
            }
            if let Some(intent) = &m.intent {
                conv.intents.insert(intent.clone());
            }
            if let Some(node) = &m.node_id {
                conv.nodes.insert(node.clone());
                if m.node_type.as_deref() == Some("prompt") {
                    conv.prompts.insert(node.clone());
                }
            }
        }
        conv.dropoff = last_flow
            .filter(|m| !m.flow_completed)
            .map(|m| (m.flow.clone().unwrap(), m.step.clone()));
        conv.tags = self.tags(&conv);
        conv
    }

    /// The built-in tagging rules of API.md with their default parameters.
    fn tags(&self, conv: &Conv) -> BTreeSet<String> {
        let msgs: Vec<&Msg> = conv.msgs.iter().map(|&i| &self.msgs[i]).collect();
        let mut tags = BTreeSet::new();
        let mut tag = |name: &str, on: bool| {
            if on {
                tags.insert(name.to_string());
            }
        };
        tag("unidentified_response", msgs.iter().any(|m| m.unidentified));
        // A run of unidentified messages; only an identified bot message breaks it.
        let mut run = 0;
        let mut longest = 0;
        for m in &msgs {
            if m.unidentified {
                run += 1;
                longest = longest.max(run);
            } else if m.role == "bot" {
                run = 0;
            }
        }
        tag("repeated_unidentified", longest >= 2);
        tag("dropoff", conv.dropoff.is_some());
        tag("agent_handoff", msgs.iter().any(|m| m.role == "agent"));
        tag(
            "low_confidence",
            msgs.iter()
                .any(|m| m.role == "user" && m.confidence.is_some_and(|c| c < 0.5)),
        );
        let mut said: HashMap<String, usize> = HashMap::new();
        for m in msgs.iter().filter(|m| m.role == "user") {
            let normal = m
                .text
                .to_lowercase()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            *said.entry(normal).or_default() += 1;
        }
        tag("user_repeated", said.values().any(|&n| n >= 2));
        let last = msgs.last().expect("a conversation has messages");
        let now = chrono::Utc::now().timestamp_micros();
        tag(
            "no_bot_reply",
            last.role == "user" && now - last.ts > timeout(&conv.channel),
        );
        tag("long_conversation", msgs.len() > 50);
        tags
    }

    /// Indices of the conversations of `bot`.
    pub fn of_bot<'a>(&'a self, bot: &'a str) -> impl Iterator<Item = usize> + 'a {
        (0..self.convs.len()).filter(move |&c| self.convs[c].bot == bot)
    }

    /// Whether conversation `c` satisfies the text query.
    pub fn text_matches(&self, q: &Query, c: usize) -> bool {
        match q {
            Query::Term { role, tokens } => {
                let wanted: Option<Vec<u32>> = tokens.iter().map(|t| self.id_of(t)).collect();
                let Some(wanted) = wanted else { return false };
                self.convs[c].msgs.iter().any(|&i| {
                    let m = &self.msgs[i];
                    role.as_ref().is_none_or(|r| *r == m.role)
                        && !wanted.is_empty()
                        && m.tokens
                            .windows(wanted.len())
                            .any(|w| w == wanted.as_slice())
                })
            }
            Query::And(children) => children.iter().all(|q| self.text_matches(q, c)),
            Query::Or(children) => children.iter().any(|q| self.text_matches(q, c)),
            Query::Not(inner) => !self.text_matches(inner, c),
        }
    }
}

impl World {
    /// Whether message `i` on its own satisfies the text query (message search).
    pub fn message_matches(&self, q: &Query, i: usize) -> bool {
        let m = &self.msgs[i];
        match q {
            Query::Term { role, tokens } => {
                let wanted: Option<Vec<u32>> = tokens.iter().map(|t| self.id_of(t)).collect();
                let Some(wanted) = wanted else { return false };
                role.as_ref().is_none_or(|r| *r == m.role)
                    && !wanted.is_empty()
                    && m.tokens
                        .windows(wanted.len())
                        .any(|w| w == wanted.as_slice())
            }
            Query::And(children) => children.iter().all(|q| self.message_matches(q, i)),
            Query::Or(children) => children.iter().any(|q| self.message_matches(q, i)),
            Query::Not(inner) => !self.message_matches(inner, i),
        }
    }
}

/// A text query, as a tree.
#[derive(Debug, Clone)]
pub enum Query {
    /// A word (one token) or a phrase, optionally limited to a role.
    Term {
        role: Option<String>,
        tokens: Vec<String>,
    },
    And(Vec<Query>),
    Or(Vec<Query>),
    Not(Box<Query>),
}

impl Query {
    /// A word or phrase term.
    pub fn term(role: Option<&str>, tokens: &[&str]) -> Query {
        Query::Term {
            role: role.map(str::to_string),
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
        }
    }

    /// The query in the contract's syntax; `rng` picks between equivalent spellings
    /// (`AND` or juxtaposition, `NOT x` or `-x`, optional `+`).
    pub fn render(&self, rng: &mut Rng) -> String {
        match self {
            Query::Term { .. } => self.render_term(),
            Query::Not(inner) => render_negation(inner, rng),
            Query::And(children) => {
                let mut out = String::new();
                for (n, child) in children.iter().enumerate() {
                    if n > 0 {
                        out.push_str(if rng.chance(0.5) { " " } else { " AND " });
                    }
                    match child {
                        Query::Term { .. } if rng.chance(0.25) => {
                            out.push('+');
                            out.push_str(&child.render_term());
                        }
                        Query::Term { .. } | Query::Not(_) => out.push_str(&child.render(rng)),
                        _ => out.push_str(&format!("({})", child.render(rng))),
                    }
                }
                out
            }
            Query::Or(children) => children
                .iter()
                .map(|child| match child {
                    Query::Term { .. } | Query::Not(_) => child.render(rng),
                    _ => format!("({})", child.render(rng)),
                })
                .collect::<Vec<_>>()
                .join(" OR "),
        }
    }

    fn render_term(&self) -> String {
        let Query::Term { role, tokens } = self else {
            unreachable!("only terms")
        };
        let body = if tokens.len() == 1 {
            tokens[0].clone()
        } else {
            format!("\"{}\"", tokens.join(" "))
        };
        match role {
            Some(role) => format!("{role}:{body}"),
            None => body,
        }
    }
}

fn render_negation(inner: &Query, rng: &mut Rng) -> String {
    match inner {
        Query::Term { .. } if rng.chance(0.5) => format!("-{}", inner.render_term()),
        Query::Term { .. } => format!("NOT {}", inner.render_term()),
        _ => format!("NOT ({})", inner.render(rng)),
    }
}

/// Sort orders compared against the oracle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    LastMessageAt,
    StartedAt,
}

/// One conversation search, as parameters and as the oracle evaluates it.
#[derive(Debug, Clone)]
pub struct Search {
    pub bot: String,
    pub from: i64,
    pub to: i64,
    /// The query and its rendered text.
    pub q: Option<(Query, String)>,
    pub channels: Vec<String>,
    pub tags: Vec<String>,
    pub flows: Vec<String>,
    pub steps: Vec<String>,
    pub dropoff: Option<bool>,
    pub nodes: Vec<String>,
    pub intents: Vec<String>,
    pub flagged: Option<bool>,
    pub sort: Sort,
    pub limit: Option<usize>,
}

/// Facet dimensions the oracle can leave out (disjunctive counting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dim {
    Channel,
    Tag,
    Flow,
    Node,
    Intent,
    Flagged,
}

/// What the first pages and the facets should be.
#[derive(Debug)]
pub struct Expected {
    pub total: usize,
    /// Matching conversations in result order.
    pub ordered: Vec<usize>,
    pub facets: Value,
}

impl Search {
    /// A search of `bot` over `[from, to)` with no other filter.
    pub fn new(bot: &str, from: i64, to: i64) -> Search {
        Search {
            bot: bot.to_string(),
            from,
            to,
            q: None,
            channels: Vec::new(),
            tags: Vec::new(),
            flows: Vec::new(),
            steps: Vec::new(),
            dropoff: None,
            nodes: Vec::new(),
            intents: Vec::new(),
            flagged: None,
            sort: Sort::LastMessageAt,
            limit: None,
        }
    }

    /// Query-string pairs for the request.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut pairs = vec![
            ("from".to_string(), crate::common::rfc3339(self.from)),
            ("to".to_string(), crate::common::rfc3339(self.to)),
        ];
        let mut push = |k: &str, v: &str| pairs.push((k.to_string(), v.to_string()));
        if let Some((_, text)) = &self.q {
            push("q", text);
        }
        for c in &self.channels {
            push("channel", c);
        }
        for t in &self.tags {
            push("tag", t);
        }
        for f in &self.flows {
            push("flow", f);
        }
        for s in &self.steps {
            push("step", s);
        }
        if let Some(d) = self.dropoff {
            push("dropoff", if d { "true" } else { "false" });
        }
        for n in &self.nodes {
            push("node", n);
        }
        for i in &self.intents {
            push("intent", i);
        }
        if let Some(f) = self.flagged {
            push("flagged", if f { "true" } else { "false" });
        }
        if self.sort == Sort::StartedAt {
            push("sort", "started_at");
        }
        if let Some(limit) = self.limit {
            push("limit", &limit.to_string());
        }
        pairs
    }

    fn in_range(&self, conv: &Conv) -> bool {
        let first_at_or_after = conv.times.partition_point(|&t| t < self.from);
        conv.times
            .get(first_at_or_after)
            .is_some_and(|&t| t < self.to)
    }

    fn flow_ok(&self, conv: &Conv) -> bool {
        let pair_of = |flow: &String, step: &Option<String>| {
            self.flows.contains(flow) && step.as_ref().is_some_and(|s| self.steps.contains(s))
        };
        let entered = self.flows.is_empty() || self.flows.iter().any(|f| conv.flows.contains(f));
        let reached = self.steps.is_empty()
            || conv
                .steps
                .iter()
                .any(|(f, s)| self.flows.contains(f) && self.steps.contains(s));
        let dropoff_ok = match self.dropoff {
            None => true,
            Some(want) => {
                let there = match &conv.dropoff {
                    None => false,
                    Some((flow, step)) if !self.steps.is_empty() => pair_of(flow, step),
                    Some((flow, _)) if !self.flows.is_empty() => self.flows.contains(flow),
                    Some(_) => true,
                };
                there == want
            }
        };
        entered && reached && dropoff_ok
    }

    fn passes(&self, world: &World, c: usize, text_ok: bool, without: Option<Dim>) -> bool {
        let conv = &world.convs[c];
        let keep = |d: Dim| without != Some(d);
        text_ok
            && conv.bot == self.bot
            && self.in_range(conv)
            && (!keep(Dim::Channel) || self.channels.is_empty() || self.channels.contains(&conv.channel))
            && (!keep(Dim::Tag) || self.tags.is_empty() || self.tags.iter().any(|t| conv.tags.contains(t)))
            && (!keep(Dim::Flow) || self.flow_ok(conv))
            && (!keep(Dim::Node) || self.nodes.is_empty() || self.nodes.iter().any(|n| conv.nodes.contains(n)))
            && (!keep(Dim::Intent) || self.intents.is_empty() || self.intents.iter().any(|i| conv.intents.contains(i)))
            // Nothing is flagged in this build.
            && (!keep(Dim::Flagged) || self.flagged != Some(true))
    }

    /// The oracle's answer. Conversation order needs [`Conv::server_id`] for ties.
    pub fn expected(&self, world: &World) -> Expected {
        let mut channel: BTreeMap<String, u64> = BTreeMap::new();
        let mut tag: BTreeMap<String, u64> = BTreeMap::new();
        let mut flow: BTreeMap<String, u64> = BTreeMap::new();
        let mut node: BTreeMap<String, u64> = BTreeMap::new();
        let mut intent: BTreeMap<String, u64> = BTreeMap::new();
        let mut unflagged = 0u64;
        let mut ordered = Vec::new();
        for c in world.of_bot(&self.bot) {
            let text_ok = self
                .q
                .as_ref()
                .is_none_or(|(q, _)| world.text_matches(q, c));
            let conv = &world.convs[c];
            if self.passes(world, c, text_ok, None) {
                ordered.push(c);
            }
            if self.passes(world, c, text_ok, Some(Dim::Channel)) {
                *channel.entry(conv.channel.clone()).or_default() += 1;
            }
            if self.passes(world, c, text_ok, Some(Dim::Tag)) {
                for t in &conv.tags {
                    *tag.entry(t.clone()).or_default() += 1;
                }
            }
            if self.passes(world, c, text_ok, Some(Dim::Flow)) {
                for f in &conv.flows {
                    *flow.entry(f.clone()).or_default() += 1;
                }
            }
            if self.passes(world, c, text_ok, Some(Dim::Node)) {
                for n in &conv.prompts {
                    *node.entry(n.clone()).or_default() += 1;
                }
            }
            if self.passes(world, c, text_ok, Some(Dim::Intent)) {
                for i in &conv.intents {
                    *intent.entry(i.clone()).or_default() += 1;
                }
            }
            if self.passes(world, c, text_ok, Some(Dim::Flagged)) {
                unflagged += 1;
            }
        }
        let key = |c: usize| {
            let conv = &world.convs[c];
            let time = match self.sort {
                Sort::LastMessageAt => conv.last,
                Sort::StartedAt => conv.started,
            };
            std::cmp::Reverse((time, conv.server_id))
        };
        ordered.sort_by_key(|&c| key(c));
        let mut flagged = Map::new();
        if unflagged > 0 {
            flagged.insert("false".into(), json!(unflagged));
        }
        Expected {
            total: ordered.len(),
            ordered,
            facets: json!({
                "channel": channel,
                "tag": tag,
                "label": {},
                "flow": flow,
                "node": node,
                "intent": intent,
                "flagged": flagged,
            }),
        }
    }
}
