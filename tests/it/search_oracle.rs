//! Acceptance 1: on 100k generated messages, search answers (totals, pages,
//! facets) equal what a plain scan of the generated data computes.
//!
//! One server is loaded once and shared by every test here (a `OnceLock`
//! fixture): loading and mapping ids costs far more than the checks.

use crate::common::{
    ALL_FROM, ALL_TO, Rng, Server, encode, generated, micros, query_string, remove_at_exit,
};
use crate::oracle::{Query, Search, Sort, World};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

const BOTS: [&str; 2] = ["alpha", "beta"];
const DAY: i64 = 86_400_000_000;
const HOUR: i64 = 3_600_000_000;

/// Per flow: (conversations, dropped off, per step: (reached, dropped off)).
type Funnels = BTreeMap<String, (u64, u64, BTreeMap<Option<String>, (u64, u64)>)>;

struct Fixture {
    server: Server,
    world: World,
    /// Messages generated (and acknowledged).
    sent: usize,
    /// Problems found while matching stored conversations to the oracle's sessions.
    session_problems: Vec<String>,
    _cleanup: crate::common::ExitCleaner,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(load)
}

fn conv_id(server_id: u64) -> String {
    format!("c_{server_id:x}")
}

fn parse_conv_id(text: &str) -> u64 {
    u64::from_str_radix(text.strip_prefix("c_").expect("c_ prefix"), 16).expect("hex id")
}

fn load() -> Fixture {
    let started = std::time::Instant::now();
    let messages = generated(20_261_120, 8_800, &BOTS, 30);
    assert!(
        messages.len() >= 100_000,
        "only {} messages generated",
        messages.len()
    );
    // The fixture lives in a `static` and is never dropped: a helper removes its directory at exit.
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let cleanup = remove_at_exit(&dir);
    // Six-hour partitions: every search over more than a few hours spans several,
    // and many conversations cross a partition boundary.
    let server = Server::start(&dir, &["--set", "index.partition_span=6h"]);
    let (accepted, duplicates) = server.ingest_parallel(&messages, 1_000, 3);
    assert_eq!((accepted, duplicates), (messages.len() as u64, 0));
    let mut world = World::new(&messages);
    // Tags are written by a background job after ingest: wait until they are in.
    server.wait_settled();
    eprintln!(
        "fixture: {} messages, {} conversations loaded in {:.1}s",
        messages.len(),
        world.convs.len(),
        started.elapsed().as_secs_f64()
    );

    // Learn the server's conversation id of every message, one bot per thread.
    let stored: Vec<Vec<(String, String)>> = std::thread::scope(|scope| {
        let server = &server;
        let workers: Vec<_> = BOTS
            .iter()
            .map(|bot| scope.spawn(move || server.message_conversations(bot)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("mapping thread"))
            .collect()
    });
    let mut server_conv_of: HashMap<(&str, &str), u64> = HashMap::new();
    let mut problems = Vec::new();
    for (bot, list) in BOTS.iter().zip(&stored) {
        for (msg, conv) in list {
            if server_conv_of
                .insert((bot, msg), parse_conv_id(conv))
                .is_some()
            {
                problems.push(format!(
                    "message {bot}/{msg} listed twice by message search"
                ));
            }
        }
    }
    if server_conv_of.len() != messages.len() {
        problems.push(format!(
            "message search lists {} distinct messages, {} were ingested",
            server_conv_of.len(),
            messages.len()
        ));
    }
    let mut owner: HashMap<u64, usize> = HashMap::new();
    for c in 0..world.convs.len() {
        let ids: BTreeSet<u64> = world.convs[c]
            .msgs
            .iter()
            .filter_map(|&i| {
                let m = &world.msgs[i];
                server_conv_of
                    .get(&(m.bot.as_str(), m.id.as_str()))
                    .copied()
            })
            .collect();
        let first = world.msgs[world.convs[c].msgs[0]].id.clone();
        match ids.len() {
            1 => {}
            0 => problems.push(format!(
                "session of message {first}: no message found on the server"
            )),
            _ => problems.push(format!(
                "session of message {first} is split over server conversations {:?}",
                ids.iter().map(|&i| conv_id(i)).collect::<Vec<_>>()
            )),
        }
        if let Some(&id) = ids.iter().next() {
            world.convs[c].server_id = id;
            if let Some(other) = owner.insert(id, c) {
                let other_first = &world.msgs[world.convs[other].msgs[0]].id;
                problems.push(format!(
                    "sessions of messages {other_first} and {first} are merged into {}",
                    conv_id(id)
                ));
            }
        }
    }
    eprintln!(
        "fixture ready after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Fixture {
        server,
        world,
        sent: messages.len(),
        session_problems: problems,
        _cleanup: cleanup,
    }
}

#[test]
fn stored_conversations_are_the_sessions_the_contract_defines() {
    let f = fixture();
    assert!(
        f.session_problems.is_empty(),
        "{} problems, first ones:\n{}",
        f.session_problems.len(),
        f.session_problems
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(f.sent >= 100_000);
}

#[test]
fn every_conversation_object_summarises_its_messages() {
    let f = fixture();
    let by_id: HashMap<u64, usize> = (0..f.world.convs.len())
        .map(|c| (f.world.convs[c].server_id, c))
        .collect();
    let mut problems = Vec::new();
    for bot in BOTS {
        let path = format!("/v1/bots/{bot}/conversations?from={ALL_FROM}&to={ALL_TO}&limit=100");
        let listed = f.server.page_all(&path, "conversations");
        let expected = f.world.of_bot(bot).count();
        if listed.len() != expected {
            problems.push(format!(
                "{bot}: {} conversations listed, oracle has {expected}",
                listed.len()
            ));
        }
        let mut pseudonyms: HashMap<&str, BTreeSet<String>> = HashMap::new();
        for object in listed {
            let id = object["id"].as_str().expect("id");
            let Some(&c) = by_id.get(&parse_conv_id(id)) else {
                problems.push(format!("{bot}: unknown conversation {id}"));
                continue;
            };
            let conv = &f.world.convs[c];
            let user = &f.world.msgs[conv.msgs[0]].user;
            let pseudonym = object["user"].as_str().unwrap_or_default().to_string();
            if pseudonym.is_empty() || pseudonym == *user {
                problems.push(format!("{id}: user shown as {pseudonym:?}"));
            }
            pseudonyms.entry(user).or_default().insert(pseudonym);
            let flows: BTreeSet<&str> = object["flows"]
                .as_array()
                .expect("flows")
                .iter()
                .map(|v| v.as_str().expect("flow"))
                .collect();
            let tags: BTreeSet<String> = object["tags"]
                .as_array()
                .expect("tags")
                .iter()
                .map(|v| v.as_str().expect("tag").to_string())
                .collect();
            let dropoff = match &object["dropoff"] {
                Value::Null => None,
                d => Some((
                    d["flow"].as_str().expect("dropoff.flow").to_string(),
                    d["step"].as_str().map(str::to_string),
                )),
            };
            let checks = [
                ("bot_id", object["bot_id"] == bot, bot.to_string()),
                (
                    "channel",
                    object["channel"] == conv.channel.as_str(),
                    conv.channel.clone(),
                ),
                (
                    "message_count",
                    object["message_count"] == conv.msgs.len(),
                    conv.msgs.len().to_string(),
                ),
                (
                    "started_at",
                    micros(object["started_at"].as_str().expect("started_at")) == conv.started,
                    crate::common::rfc3339(conv.started),
                ),
                (
                    "last_message_at",
                    micros(object["last_message_at"].as_str().expect("last_message_at"))
                        == conv.last,
                    crate::common::rfc3339(conv.last),
                ),
                (
                    "flows",
                    flows == conv.flows.iter().map(String::as_str).collect(),
                    format!("{:?}", conv.flows),
                ),
                (
                    "dropoff",
                    dropoff == conv.dropoff,
                    format!("{:?}", conv.dropoff),
                ),
                ("tags", tags == conv.tags, format!("{:?}", conv.tags)),
            ];
            for (field, ok, want) in checks {
                if !ok {
                    problems.push(format!(
                        "{id}.{field}: got {}, oracle {want}",
                        object[field]
                    ));
                }
            }
        }
        // API.md: the same end user has the same pseudonym on every session of that bot.
        for (user, names) in pseudonyms.iter().filter(|(_, names)| names.len() > 1) {
            problems.push(format!("{bot}: one user ({user}) shown under {names:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Values of one bot that random filters draw from.
struct Catalog {
    convs: Vec<usize>,
    channels: Vec<String>,
    tags: Vec<String>,
    flows: Vec<String>,
    nodes: Vec<String>,
    intents: Vec<String>,
    start: i64,
    end: i64,
}

fn catalog(world: &World, bot: &str) -> Catalog {
    let convs: Vec<usize> = world.of_bot(bot).collect();
    let mut channels = BTreeSet::new();
    let mut tags = BTreeSet::new();
    let mut flows = BTreeSet::new();
    let mut nodes = BTreeSet::new();
    let mut intents = BTreeSet::new();
    for &c in &convs {
        let conv = &world.convs[c];
        channels.insert(conv.channel.clone());
        tags.extend(conv.tags.iter().cloned());
        flows.extend(conv.flows.iter().cloned());
        nodes.extend(conv.nodes.iter().cloned());
        intents.extend(conv.intents.iter().cloned());
    }
    Catalog {
        start: convs
            .iter()
            .map(|&c| world.convs[c].started)
            .min()
            .expect("data"),
        end: convs
            .iter()
            .map(|&c| world.convs[c].last)
            .max()
            .expect("data")
            + 1,
        convs,
        channels: channels.into_iter().collect(),
        tags: tags.into_iter().collect(),
        flows: flows.into_iter().collect(),
        nodes: nodes.into_iter().collect(),
        intents: intents.into_iter().collect(),
    }
}

/// A word or phrase from a message of conversation `c`: (role, tokens).
fn text_of(world: &World, rng: &mut Rng, c: usize, phrase: bool) -> (String, Vec<String>) {
    let msgs = &world.convs[c].msgs;
    for _ in 0..50 {
        let m = &world.msgs[*rng.pick(msgs)];
        let usable = |t: &u32| world.word(*t).len() <= 64;
        if phrase && m.tokens.len() >= 2 {
            let len = 2 + rng.below(2).min(m.tokens.len() - 2);
            let start = rng.below(m.tokens.len() - len + 1);
            let tokens = &m.tokens[start..start + len];
            if tokens.iter().all(usable) {
                return (
                    m.role.clone(),
                    tokens.iter().map(|&t| world.word(t).to_string()).collect(),
                );
            }
        } else if !phrase && !m.tokens.is_empty() {
            let t = *rng.pick(&m.tokens);
            if usable(&t) {
                return (m.role.clone(), vec![world.word(t).to_string()]);
            }
        }
    }
    (String::new(), vec!["hello".to_string()])
}

fn term(world: &World, rng: &mut Rng, c: usize, phrase: bool, qualified: bool) -> Query {
    let (role, tokens) = text_of(world, rng, c, phrase);
    let role = (qualified && matches!(role.as_str(), "user" | "bot" | "agent")).then_some(role);
    Query::Term { role, tokens }
}

/// A random query shaped by `shape`, drawn mostly from conversation `c` so it tends to match.
fn random_query(world: &World, rng: &mut Rng, cat: &Catalog, c: usize) -> Query {
    let other = *rng.pick(&cat.convs);
    match rng.below(10) {
        0 => term(world, rng, c, false, false),
        1 => Query::And(vec![
            term(world, rng, c, false, false),
            term(world, rng, c, false, false),
        ]),
        2 => term(world, rng, c, true, false),
        3 => term(world, rng, c, false, true),
        4 => term(world, rng, c, true, true),
        5 => Query::Or(vec![
            term(world, rng, c, false, false),
            term(world, rng, other, false, false),
        ]),
        6 => Query::And(vec![
            term(world, rng, c, false, false),
            Query::Not(Box::new(term(world, rng, other, false, false))),
        ]),
        7 => Query::Not(Box::new(term(world, rng, c, false, false))),
        8 => Query::And(vec![
            Query::Or(vec![
                term(world, rng, c, false, false),
                term(world, rng, other, false, true),
            ]),
            Query::Not(Box::new(term(world, rng, other, true, false))),
        ]),
        _ => Query::Or(vec![
            Query::And(vec![
                term(world, rng, c, false, true),
                term(world, rng, c, false, false),
            ]),
            Query::And(vec![
                term(world, rng, other, true, false),
                Query::Not(Box::new(term(world, rng, c, false, false))),
            ]),
        ]),
    }
}

fn random_search(world: &World, rng: &mut Rng, cats: &[(&str, Catalog)]) -> Search {
    let (bot, cat) = &cats[rng.below(cats.len())];
    let c = *rng.pick(&cat.convs);
    let conv = &world.convs[c];
    let (from, to) = match rng.below(10) {
        0..=2 => (cat.start - DAY, cat.end + DAY),
        3..=5 => (
            conv.started - rng.range_i64(0, 3 * DAY),
            conv.last + rng.range_i64(1, 3 * DAY),
        ),
        6 | 7 => {
            let from = rng.range_i64(cat.start, cat.end);
            (from, from + rng.range_i64(HOUR, 5 * DAY))
        }
        8 => {
            // Bounds exactly on message times: `from` is inclusive, `to` exclusive.
            let from = *rng.pick(&conv.times);
            let later = world.convs[*rng.pick(&cat.convs)].last;
            (from, if later > from { later } else { from + DAY })
        }
        _ => {
            let from = *rng.pick(&conv.times);
            (from, from + rng.range_i64(1_000_000, 2 * HOUR))
        }
    };
    let mut search = Search::new(bot, from, to);
    if rng.chance(0.6) {
        let query = random_query(world, rng, cat, c);
        let text = query.render(rng);
        search.q = Some((query, text));
    }
    if rng.chance(0.35) {
        search.channels.push(conv.channel.clone());
        if rng.chance(0.5) {
            let other = rng.pick(&cat.channels).clone();
            if !search.channels.contains(&other) {
                search.channels.push(other);
            }
        }
    }
    if rng.chance(0.2) {
        // A tag of this conversation (when it has one) and maybe another.
        let own: Vec<&String> = conv.tags.iter().collect();
        if !own.is_empty() {
            search.tags.push((*rng.pick(&own)).clone());
        }
        if own.is_empty() || rng.chance(0.4) {
            let other = rng.pick(&cat.tags).clone();
            if !search.tags.contains(&other) {
                search.tags.push(other);
            }
        }
    }
    if !conv.flows.is_empty() && rng.chance(0.4) {
        let flows: Vec<&String> = conv.flows.iter().collect();
        let flow = (*rng.pick(&flows)).clone();
        let steps: Vec<&String> = conv
            .steps
            .iter()
            .filter(|(f, _)| *f == flow)
            .map(|(_, s)| s)
            .collect();
        search.flows.push(flow);
        if rng.chance(0.3) {
            let other = rng.pick(&cat.flows).clone();
            if !search.flows.contains(&other) {
                search.flows.push(other);
            }
        }
        if !steps.is_empty() && rng.chance(0.4) {
            search.steps.push((*rng.pick(&steps)).clone());
        }
        if rng.chance(0.35) {
            search.dropoff = Some(rng.chance(0.8));
        }
    } else if rng.chance(0.15) {
        search.dropoff = Some(rng.chance(0.5));
    }
    if !conv.nodes.is_empty() && rng.chance(0.2) {
        let nodes: Vec<&String> = conv.nodes.iter().collect();
        search.nodes.push((*rng.pick(&nodes)).clone());
        if rng.chance(0.4) {
            search.nodes.push(rng.pick(&cat.nodes).clone());
        }
    }
    if !conv.intents.is_empty() && rng.chance(0.2) {
        let intents: Vec<&String> = conv.intents.iter().collect();
        search.intents.push((*rng.pick(&intents)).clone());
        if rng.chance(0.4) {
            let other = rng.pick(&cat.intents).clone();
            if !search.intents.contains(&other) {
                search.intents.push(other);
            }
        }
    }
    if rng.chance(0.25) {
        // Nothing is flagged in this build: `true` must find nothing yet count the rest.
        search.flagged = Some(rng.chance(0.2));
    }
    if rng.chance(0.3) {
        search.sort = Sort::StartedAt;
    }
    search.limit = *rng.pick(&[None, Some(5), Some(20), Some(50), Some(100)]);
    search
}

/// Compares one search with the oracle; returns the problems found.
fn check_search(f: &Fixture, search: &Search, follow_cursor: bool) -> Vec<String> {
    let expected = search.expected(&f.world);
    let limit = search.limit.unwrap_or(20);
    let query = query_string(&search.pairs());
    let path = format!("/v1/bots/{}/conversations?{query}", search.bot);
    let reply = f.server.get(&path);
    if reply.status != 200 {
        return vec![format!("status {}: {}", reply.status, reply.body)];
    }
    let page = reply.json();
    let mut problems = Vec::new();
    let total = page["total"].as_u64().expect("total") as usize;
    if total != expected.total {
        problems.push(format!("total: server {total}, oracle {}", expected.total));
        problems.extend(explain_difference(f, search, &expected.ordered));
    }
    let ids = |page: &Value| -> Vec<String> {
        page["conversations"]
            .as_array()
            .expect("conversations")
            .iter()
            .map(|c| c["id"].as_str().expect("id").to_string())
            .collect()
    };
    let want = |range: std::ops::Range<usize>| -> Vec<String> {
        expected.ordered[range.start.min(expected.total)..range.end.min(expected.total)]
            .iter()
            .map(|&c| conv_id(f.world.convs[c].server_id))
            .collect()
    };
    if ids(&page) != want(0..limit) {
        problems.push(format!(
            "page 1: server {:?}\n        oracle {:?}",
            ids(&page),
            want(0..limit)
        ));
    }
    for dimension in ["channel", "tag", "label", "flow", "node", "flagged"] {
        let got = &page["facets"][dimension];
        let wanted = &expected.facets[dimension];
        if got != wanted {
            problems.push(format!(
                "facet {dimension}: {}",
                facet_difference(got, wanted)
            ));
        }
    }
    let cursor = page["next_cursor"].as_str();
    if cursor.is_some() != (expected.total > limit) {
        problems.push(format!(
            "next_cursor {:?} with {} matches and limit {limit}",
            cursor, expected.total
        ));
    }
    if let (Some(cursor), true) = (cursor, follow_cursor) {
        let second = f
            .server
            .get_ok(&format!("{path}&cursor={}", encode(cursor)));
        if ids(&second) != want(limit..2 * limit) {
            problems.push(format!(
                "page 2: server {:?}\n        oracle {:?}",
                ids(&second),
                want(limit..2 * limit)
            ));
        }
        if second["total"].as_u64() != Some(expected.total as u64) {
            problems.push(format!("page 2 total: {}", second["total"]));
        }
    }
    problems
}

fn facet_difference(got: &Value, wanted: &Value) -> String {
    let empty = serde_json::Map::new();
    let got = got.as_object().unwrap_or(&empty);
    let wanted = wanted.as_object().unwrap_or(&empty);
    let keys: BTreeSet<&String> = got.keys().chain(wanted.keys()).collect();
    let diffs: Vec<String> = keys
        .into_iter()
        .filter(|k| got.get(*k) != wanted.get(*k))
        .take(8)
        .map(|k| format!("{k}: server {:?} oracle {:?}", got.get(k), wanted.get(k)))
        .collect();
    diffs.join(", ")
}

/// For a wrong total: which conversations only one side has (when the lists are small enough to fetch).
fn explain_difference(f: &Fixture, search: &Search, oracle: &[usize]) -> Vec<String> {
    if oracle.len() > 3_000 {
        return Vec::new();
    }
    let mut pairs: Vec<(String, String)> = search
        .pairs()
        .into_iter()
        .filter(|(k, _)| k != "limit")
        .collect();
    pairs.push(("limit".into(), "100".into()));
    let path = format!(
        "/v1/bots/{}/conversations?{}",
        search.bot,
        query_string(&pairs)
    );
    let server: BTreeSet<String> = f
        .server
        .page_all(&path, "conversations")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_string())
        .collect();
    let by_id: BTreeMap<String, usize> = oracle
        .iter()
        .map(|&c| (conv_id(f.world.convs[c].server_id), c))
        .collect();
    let describe = |c: usize| {
        let conv = &f.world.convs[c];
        let first = &f.world.msgs[conv.msgs[0]];
        format!(
            "{} (first message {}, {} messages, {}..{}, channel {}, flows {:?}, dropoff {:?})",
            conv_id(conv.server_id),
            first.id,
            conv.msgs.len(),
            crate::common::rfc3339(conv.started),
            crate::common::rfc3339(conv.last),
            conv.channel,
            conv.flows,
            conv.dropoff
        )
    };
    let all_by_id: HashMap<String, usize> = (0..f.world.convs.len())
        .map(|c| (conv_id(f.world.convs[c].server_id), c))
        .collect();
    let mut out = Vec::new();
    for id in server.iter().filter(|id| !by_id.contains_key(*id)).take(3) {
        out.push(format!(
            "  only the server: {}",
            all_by_id.get(id).map_or(id.clone(), |&c| describe(c))
        ));
    }
    for (_, &c) in by_id.iter().filter(|(id, _)| !server.contains(*id)).take(3) {
        out.push(format!("  only the oracle: {}", describe(c)));
    }
    out
}

fn describe_search(search: &Search) -> String {
    format!(
        "GET /v1/bots/{}/conversations?{}",
        search.bot,
        query_string(&search.pairs())
    )
}

#[test]
fn search_totals_pages_and_facets_match_a_scan_of_the_generated_data() {
    let f = fixture();
    let cats: Vec<(&str, Catalog)> = BOTS.iter().map(|&b| (b, catalog(&f.world, b))).collect();
    let mut rng = Rng::new(0x00C0_FFEE);
    let mut failures = Vec::new();
    let mut nonempty = 0;
    const COMBOS: usize = 40;
    for n in 0..COMBOS {
        let search = random_search(&f.world, &mut rng, &cats);
        let problems = check_search(f, &search, n % 2 == 0);
        let total = search.expected(&f.world).total;
        nonempty += usize::from(total > 0);
        eprintln!(
            "combo {n:2}: {:5} matches, {} — {}",
            total,
            if problems.is_empty() {
                "ok"
            } else {
                "MISMATCH"
            },
            describe_search(&search)
        );
        if !problems.is_empty() {
            failures.push(format!(
                "combo {n}: {}\n  {}",
                describe_search(&search),
                problems.join("\n  ")
            ));
        }
    }
    assert!(
        nonempty >= COMBOS * 2 / 3,
        "only {nonempty} of {COMBOS} searches matched anything"
    );
    assert!(
        failures.is_empty(),
        "{} of {COMBOS} searches differ from the oracle:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn searches_whose_range_spans_several_partitions_match_the_oracle() {
    const SPAN: i64 = 6 * HOUR;
    let f = fixture();
    assert!(
        f.server.metric("convlog_index_partitions") >= 100.0,
        "the fixture should spread over many partitions"
    );
    let cats: Vec<(&str, Catalog)> = BOTS.iter().map(|&b| (b, catalog(&f.world, b))).collect();
    let mut rng = Rng::new(0x5EC7_1075);
    let mut failures = Vec::new();
    let mut nonempty = 0;
    const SEARCHES: usize = 30;
    for n in 0..SEARCHES {
        let (bot, cat) = &cats[n % cats.len()];
        // From a few minutes either side of a partition boundary to one 1 to 40 partitions on.
        let boundary = rng.range_i64(cat.start, cat.end).div_euclid(SPAN) * SPAN;
        let from = boundary + rng.range_i64(-20 * 60_000_000, 20 * 60_000_000);
        let to = boundary
            + rng.range_i64(1, 41) * SPAN
            + rng.range_i64(-20 * 60_000_000, 20 * 60_000_000);
        let mut search = Search::new(bot, from, to);
        search.limit = Some(7);
        if n % 3 == 0 {
            let c = *rng.pick(&cat.convs);
            let q = random_query(&f.world, &mut rng, cat, c);
            let text = q.render(&mut rng);
            search.q = Some((q, text));
        }
        let problems = check_search(f, &search, true);
        nonempty += usize::from(search.expected(&f.world).total > 7);
        if !problems.is_empty() {
            failures.push(format!(
                "search {n}: {}\n  {}",
                describe_search(&search),
                problems.join("\n  ")
            ));
        }
    }
    assert!(
        nonempty >= SEARCHES / 2,
        "only {nonempty} searches had a second page"
    );
    assert!(
        failures.is_empty(),
        "{} of {SEARCHES} searches differ from the oracle:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn time_range_includes_from_and_excludes_to() {
    let f = fixture();
    let cat = catalog(&f.world, "alpha");
    let mut rng = Rng::new(7);
    let mut failures = Vec::new();
    for _ in 0..12 {
        let conv = &f.world.convs[*rng.pick(&cat.convs)];
        let t = *rng.pick(&conv.times);
        // [t, t+1µs) holds exactly the conversations with a message at t; [t-1h, t) excludes it.
        for (from, to) in [(t, t + 1), (t - HOUR, t), (t + 1, t + HOUR)] {
            let search = Search::new("alpha", from, to);
            let problems = check_search(f, &search, false);
            if !problems.is_empty() {
                failures.push(format!(
                    "{}\n  {}",
                    describe_search(&search),
                    problems.join("\n  ")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn phrases_match_only_within_one_message() {
    let f = fixture();
    let cat = catalog(&f.world, "beta");
    let mut rng = Rng::new(11);
    let mut failures = Vec::new();
    let mut checked = 0;
    while checked < 16 {
        // The last word of one message and the first word of the next message of the same role.
        let conv = &f.world.convs[*rng.pick(&cat.convs)];
        let pairs: Vec<(usize, usize)> = conv
            .msgs
            .windows(2)
            .flat_map(|w| {
                let (a, b) = (&f.world.msgs[w[0]], &f.world.msgs[w[1]]);
                (a.role == b.role && !a.tokens.is_empty() && !b.tokens.is_empty())
                    .then_some((w[0], w[1]))
            })
            .collect();
        let same_role_pairs: Vec<(usize, usize)> = if pairs.is_empty() {
            // Any two messages of one role, in order, are adjacent in a per-role text field.
            let mut by_role: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for &i in &conv.msgs {
                if !f.world.msgs[i].tokens.is_empty() {
                    by_role.entry(&f.world.msgs[i].role).or_default().push(i);
                }
            }
            by_role
                .values()
                .flat_map(|v| v.windows(2).map(|w| (w[0], w[1])))
                .collect()
        } else {
            pairs
        };
        let Some(&(a, b)) = same_role_pairs.get(rng.below(same_role_pairs.len().max(1))) else {
            continue;
        };
        let (a, b) = (&f.world.msgs[a], &f.world.msgs[b]);
        let last = f.world.word(*a.tokens.last().unwrap()).to_string();
        let first = f.world.word(b.tokens[0]).to_string();
        let role = (checked % 2 == 1 && a.role != "system").then(|| a.role.clone());
        let query = Query::Term {
            role,
            tokens: vec![last, first],
        };
        let mut search = Search::new("beta", cat.start - DAY, cat.end + DAY);
        let text = query.render(&mut rng);
        search.q = Some((query, text));
        let problems = check_search(f, &search, false);
        if !problems.is_empty() {
            failures.push(format!(
                "{}\n  {}",
                describe_search(&search),
                problems.join("\n  ")
            ));
        }
        checked += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of 16 phrases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn flow_funnels_and_node_counts_match_the_oracle() {
    let f = fixture();
    let mut problems = Vec::new();
    for bot in BOTS {
        let cat = catalog(&f.world, bot);
        // A window of ten days in the middle, so the range filter matters.
        let (from, to) = (cat.start + 10 * DAY, cat.start + 20 * DAY);
        let search = Search::new(bot, from, to);
        let matching: Vec<usize> = search.expected(&f.world).ordered;
        let range = format!(
            "from={}&to={}",
            encode(&crate::common::rfc3339(from)),
            encode(&crate::common::rfc3339(to))
        );

        // Funnels: per flow, conversations and drop-offs; per step, reached and dropped off.
        let mut want: Funnels = BTreeMap::new();
        for &c in &matching {
            let conv = &f.world.convs[c];
            for flow in &conv.flows {
                want.entry(flow.clone()).or_default().0 += 1;
            }
            for (flow, step) in &conv.steps {
                let entry = want.entry(flow.clone()).or_default();
                entry.2.entry(Some(step.clone())).or_default().0 += 1;
            }
            if let Some((flow, step)) = &conv.dropoff {
                let entry = want.entry(flow.clone()).or_default();
                entry.1 += 1;
                entry.2.entry(step.clone()).or_default().1 += 1;
            }
        }
        let answer = f.server.get_ok(&format!("/v1/bots/{bot}/flows?{range}"));
        let mut got: Funnels = BTreeMap::new();
        for flow in answer["flows"].as_array().expect("flows") {
            let steps = flow["steps"]
                .as_array()
                .expect("steps")
                .iter()
                .map(|s| {
                    (
                        s["step"].as_str().map(str::to_string),
                        (
                            s["reached"].as_u64().unwrap(),
                            s["dropped_off"].as_u64().unwrap(),
                        ),
                    )
                })
                .collect();
            got.insert(
                flow["flow"].as_str().expect("flow").to_string(),
                (
                    flow["conversations"].as_u64().unwrap(),
                    flow["dropped_off"].as_u64().unwrap(),
                    steps,
                ),
            );
        }
        for flow in want.keys().chain(got.keys()).collect::<BTreeSet<_>>() {
            if want.get(flow) != got.get(flow) {
                problems.push(format!(
                    "{bot} flow {flow}: server {:?}, oracle {:?}",
                    got.get(flow),
                    want.get(flow)
                ));
            }
        }

        // Nodes: every node of the bot, with the matching conversations that passed through it.
        let mut want_nodes: BTreeMap<String, u64> =
            cat.nodes.iter().map(|n| (n.clone(), 0)).collect();
        for &c in &matching {
            for node in &f.world.convs[c].nodes {
                *want_nodes.get_mut(node).expect("node of the bot") += 1;
            }
        }
        let answer = f.server.get_ok(&format!("/v1/bots/{bot}/nodes?{range}"));
        let got_nodes: BTreeMap<String, u64> = answer["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| {
                (
                    n["id"].as_str().unwrap().to_string(),
                    n["conversations"].as_u64().unwrap(),
                )
            })
            .collect();
        if got_nodes != want_nodes {
            let keys: BTreeSet<&String> = got_nodes.keys().chain(want_nodes.keys()).collect();
            for key in keys
                .into_iter()
                .filter(|k| got_nodes.get(*k) != want_nodes.get(*k))
                .take(10)
            {
                problems.push(format!(
                    "{bot} node {key}: server {:?}, oracle {:?}",
                    got_nodes.get(key),
                    want_nodes.get(key)
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn message_search_totals_and_first_pages_match_the_oracle() {
    let f = fixture();
    let cats: Vec<(&str, Catalog)> = BOTS.iter().map(|&b| (b, catalog(&f.world, b))).collect();
    let mut rng = Rng::new(0x5EED);
    let mut failures = Vec::new();
    let mut conv_of = vec![0; f.world.msgs.len()];
    for (c, conv) in f.world.convs.iter().enumerate() {
        for &m in &conv.msgs {
            conv_of[m] = c;
        }
    }
    let mut joined = 0;
    for n in 0..16 {
        // Reuse the conversation-search generator for range and query; keep only what
        // message search evaluates per message, plus `role`.
        let mut search = random_search(&f.world, &mut rng, &cats);
        if search.q.is_none() || n % 3 == 0 {
            let (_, cat) = cats.iter().find(|(b, _)| *b == search.bot).unwrap();
            let c = *rng.pick(&cat.convs);
            let query = random_query(&f.world, &mut rng, cat, c);
            let text = query.render(&mut rng);
            search.q = Some((query, text));
        }
        let (query, text) = search.q.clone().unwrap();
        let unfiltered: Vec<usize> = (0..f.world.msgs.len())
            .filter(|&i| {
                let m = &f.world.msgs[i];
                m.bot == search.bot
                    && (search.from..search.to).contains(&m.ts)
                    && f.world.message_matches(&query, i)
            })
            .collect();
        // Roles: none, or the role of a matching message (so the filter keeps something), maybe with another.
        let mut roles: Vec<&str> = Vec::new();
        if !unfiltered.is_empty() && rng.below(3) > 0 {
            roles.push(f.world.msgs[*rng.pick(&unfiltered)].role.as_str());
            if rng.chance(0.3) {
                let other = *rng.pick(&["user", "bot", "agent", "system"]);
                if !roles.contains(&other) {
                    roles.push(other);
                }
            }
        }
        // Filters only conversation documents carry (tags, the flag, the drop-off):
        // a message passes when its conversation does.
        let tag = (n % 2 == 1 && !unfiltered.is_empty())
            .then(|| {
                f.world.convs[conv_of[*rng.pick(&unfiltered)]]
                    .tags
                    .iter()
                    .next()
                    .cloned()
            })
            .flatten();
        let dropoff = (n % 4 == 2).then_some(n % 8 == 2);
        let flagged = (n % 3 == 1).then_some(false);
        let matching: Vec<usize> = unfiltered
            .into_iter()
            .filter(|&i| roles.is_empty() || roles.contains(&f.world.msgs[i].role.as_str()))
            .filter(|&i| {
                let conv = &f.world.convs[conv_of[i]];
                tag.as_ref().is_none_or(|t| conv.tags.contains(t))
                    && dropoff.is_none_or(|d| conv.dropoff.is_some() == d)
            })
            .collect();
        let mut pairs = vec![
            ("from".to_string(), crate::common::rfc3339(search.from)),
            ("to".to_string(), crate::common::rfc3339(search.to)),
            ("q".to_string(), text),
            ("limit".to_string(), "50".to_string()),
        ];
        pairs.extend(roles.iter().map(|r| ("role".to_string(), r.to_string())));
        pairs.extend(tag.iter().map(|t| ("tag".to_string(), t.clone())));
        pairs.extend(dropoff.map(|d| ("dropoff".to_string(), d.to_string())));
        pairs.extend(flagged.map(|d| ("flagged".to_string(), d.to_string())));
        let path = format!("/v1/bots/{}/messages?{}", search.bot, query_string(&pairs));
        let reply = f.server.get(&path);
        eprintln!("messages {n:2}: {:5} matches — {path}", matching.len());
        joined += usize::from((tag.is_some() || dropoff.is_some()) && !matching.is_empty());
        if reply.status != 200 {
            failures.push(format!(
                "GET {path}\n  status {}: {}",
                reply.status, reply.body
            ));
            continue;
        }
        let page = reply.json();
        let total = page["total"].as_u64().unwrap() as usize;
        // Newest first; the order among equal timestamps is the server's (ingest order).
        let mut want_times: Vec<i64> = matching.iter().map(|&i| f.world.msgs[i].ts).collect();
        want_times.sort_unstable_by(|a, b| b.cmp(a));
        want_times.truncate(50);
        let listed = page["messages"].as_array().unwrap();
        let got_times: Vec<i64> = listed
            .iter()
            .map(|m| micros(m["timestamp"].as_str().unwrap()))
            .collect();
        let ids: BTreeSet<&str> = matching
            .iter()
            .map(|&i| f.world.msgs[i].id.as_str())
            .collect();
        let strangers: Vec<&str> = listed
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .filter(|id| !ids.contains(id))
            .collect();
        if total != matching.len() || got_times != want_times || !strangers.is_empty() {
            failures.push(format!(
                "GET {path}\n  total server {total}, oracle {}; first page times equal: {}; not matching: {:?}",
                matching.len(),
                got_times == want_times,
                &strangers[..strangers.len().min(5)]
            ));
        }
    }
    assert!(
        joined >= 4,
        "only {joined} searches with conversation filters matched anything"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_sort_order_pages_through_all_matches_exactly_once() {
    let f = fixture();
    let q = Query::Or(vec![
        Query::term(None, &["refund"]),
        Query::term(Some("user"), &["order"]),
    ]);
    let search = {
        let mut s = Search::new("alpha", micros(ALL_FROM), micros(ALL_TO));
        s.q = Some((q.clone(), "refund OR user:order".to_string()));
        s
    };
    let expected: BTreeSet<String> = search
        .expected(&f.world)
        .ordered
        .iter()
        .map(|&c| conv_id(f.world.convs[c].server_id))
        .collect();
    assert!(
        expected.len() > 500,
        "{} matches: too few to page",
        expected.len()
    );
    for (sort, limit) in [
        ("last_message_at", 100),
        ("started_at", 100),
        ("relevance", 100),
        ("last_message_at", 7),
        ("relevance", 7),
    ] {
        let path = format!(
            "/v1/bots/alpha/conversations?from={ALL_FROM}&to={ALL_TO}&q={}&sort={sort}&limit={limit}",
            encode("refund OR user:order")
        );
        let listed: Vec<String> = f
            .server
            .page_all(&path, "conversations")
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect();
        let distinct: BTreeSet<String> = listed.iter().cloned().collect();
        assert_eq!(
            distinct.len(),
            listed.len(),
            "sort={sort}, limit={limit}: some match listed twice"
        );
        assert_eq!(
            distinct, expected,
            "sort={sort}, limit={limit}: listed matches differ from the oracle"
        );
    }
}

#[test]
fn one_conversation_shows_its_messages_in_order_and_the_users_recent_history() {
    let f = fixture();
    let mut rng = Rng::new(99);
    let mut problems = Vec::new();
    let mut with_history = 0;
    // Users seldom return within 5 days: sample half among conversations that have history.
    let mut of_user: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (c, conv) in f.world.convs.iter().enumerate() {
        let user = f.world.msgs[conv.msgs[0]].user.as_str();
        of_user
            .entry((conv.bot.as_str(), user))
            .or_default()
            .push(c);
    }
    let returning: Vec<usize> = of_user
        .values()
        .flat_map(|convs| {
            convs.iter().copied().filter(|&c| {
                let started = f.world.convs[c].started;
                convs.iter().any(|&d| {
                    let other = f.world.convs[d].started;
                    other < started && other >= started - 5 * DAY
                })
            })
        })
        .collect::<BTreeSet<usize>>()
        .into_iter()
        .collect();
    for n in 0..60 {
        let c = if n % 2 == 0 {
            *rng.pick(&returning)
        } else {
            rng.below(f.world.convs.len())
        };
        let conv = &f.world.convs[c];
        let id = conv_id(conv.server_id);
        let detail = f
            .server
            .get_ok(&format!("/v1/bots/{}/conversations/{id}", conv.bot));
        let got: Vec<&str> = detail["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = conv
            .msgs
            .iter()
            .map(|&i| f.world.msgs[i].id.as_str())
            .collect();
        if got != want {
            problems.push(format!("{id}: messages {got:?}, oracle {want:?}"));
        }

        // The same user's earlier conversations of the last 5 days (before this one started).
        // Those that started before the window but were active in it may go either way.
        let user = &f.world.msgs[conv.msgs[0]].user;
        let window = conv.started - 5 * DAY;
        let mut must = BTreeSet::new();
        let mut may = BTreeSet::new();
        for &d in &of_user[&(conv.bot.as_str(), user.as_str())] {
            let other = &f.world.convs[d];
            if d == c {
                continue;
            }
            if other.started < conv.started && other.started >= window {
                must.insert(conv_id(other.server_id));
            } else if other.started < conv.started && other.last >= window {
                may.insert(conv_id(other.server_id));
            }
        }
        let history: BTreeSet<String> = detail["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap().to_string())
            .collect();
        with_history += usize::from(!must.is_empty());
        let missing: Vec<&String> = must.difference(&history).collect();
        let extra: Vec<&String> = history
            .iter()
            .filter(|h| !must.contains(*h) && !may.contains(*h))
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            problems.push(format!(
                "{id}: history lacks {missing:?}, has unexpected {extra:?}"
            ));
        }
    }
    assert!(
        with_history >= 10,
        "only {with_history} sampled conversations have history"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
