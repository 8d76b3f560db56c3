//! Issue #3, acceptance 1: label, unlabel, flag and unflag on ~1,000 conversations in a
//! seeded random order from several client threads while new messages are ingested; the
//! filters, facets and `/labels` must equal an oracle replaying the actions. Then a second
//! round is cut by `kill -9`: after a restart every acknowledged action is there.
//!
//! The oracle: each (conversation, label) pair and each conversation's flag is owned by
//! exactly one client thread, so the actions on one such component happen in their planned
//! order whatever the interleaving, and the final state is a replay of the plan. A client
//! thread stops at its first request that gets no answer (the kill): that one action may or
//! may not have happened, everything it did before was acknowledged.

use crate::common::{Rng, Server, end, generated};
use crate::review::{Client, all_time, encode, facet, labels_list, micros, rfc3339};
use convlog_gen::{GenConfig, GenMessage, generate};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BOT: &str = "rv";
const THREADS: usize = 8;
/// Round 2 is cut by `kill -9` once this many of its actions are acknowledged.
const KILL_AFTER: usize = 1500;

/// Label keys: the first spelling is the bot's (seeded first); the others are variants of it.
const LABELS: &[&[&str]] = &[
    &["Complaint", "complaint", "COMPLAINT", "  Complaint "],
    &["billing", "Billing", "BILLING"],
    &["Needs follow-up", "needs FOLLOW-UP", "NEEDS Follow-Up"],
    &["Überprüfung", "überprüfung", "ÜBERPRÜFUNG"],
    &["a/b & c?", "A/B & C?"],
];

fn canonical(label: usize) -> &'static str {
    LABELS[label][0]
}

/// The state of one component of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Item {
    Label(usize),
    Flag,
}

/// Review state of one conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct State {
    labels: BTreeSet<usize>,
    /// `None`: not flagged; `Some(note)`: flagged with that note (if any).
    flag: Option<Option<String>>,
}

#[derive(Debug, Clone)]
struct Action {
    conv: usize,
    item: Item,
    on: bool,
    /// The label as sent (some spelling of the key).
    spelling: &'static str,
    note: Option<String>,
}

impl Action {
    fn apply(&self, state: &mut State) {
        match (self.item, self.on) {
            (Item::Label(k), true) => {
                state.labels.insert(k);
            }
            (Item::Label(k), false) => {
                state.labels.remove(&k);
            }
            (Item::Flag, true) => {
                let old = state.flag.take().flatten();
                state.flag = Some(self.note.clone().or(old));
            }
            (Item::Flag, false) => state.flag = None,
        }
    }

    fn component_matches(&self, a: &State, b: &State) -> bool {
        match self.item {
            Item::Label(k) => a.labels.contains(&k) == b.labels.contains(&k),
            Item::Flag => a.flag == b.flag,
        }
    }

    fn request(&self, id: &str) -> (&'static str, String, Option<String>) {
        let base = format!("/v1/bots/{BOT}/conversations/{id}");
        match (self.item, self.on) {
            (Item::Label(_), on) => (
                if on { "PUT" } else { "DELETE" },
                format!("{base}/labels/{}", encode(self.spelling)),
                None,
            ),
            (Item::Flag, true) => (
                "PUT",
                format!("{base}/flag"),
                self.note.as_ref().map(|n| json!({ "note": n }).to_string()),
            ),
            (Item::Flag, false) => ("DELETE", format!("{base}/flag"), None),
        }
    }

    fn thread(&self) -> usize {
        let item = match self.item {
            Item::Label(k) => k as u64 + 1,
            Item::Flag => 0,
        };
        let h = (self.conv as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(item.wrapping_mul(0xBF58_476D_1CE4_E5B9));
        ((h >> 29) % THREADS as u64) as usize
    }
}

/// `n` random actions on conversations `1..convs` (conversation 0 keeps every label).
fn plan(seed: u64, n: usize, convs: usize) -> Vec<Action> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let conv = 1 + rng.below(convs - 1);
            let item = if rng.chance(0.3) {
                Item::Flag
            } else {
                Item::Label(rng.below(LABELS.len()))
            };
            let on = rng.chance(0.6);
            let spelling = match item {
                Item::Label(k) => *rng.pick(LABELS[k]),
                Item::Flag => "",
            };
            let note =
                (item == Item::Flag && on && rng.chance(0.5)).then(|| format!("note {seed:x}-{i}"));
            Action {
                conv,
                item,
                on,
                spelling,
                note,
            }
        })
        .collect()
}

/// The labels and flag of a conversation object as a [`State`]; panics on unknown labels.
fn state_of(object: &Value) -> State {
    let labels = object["labels"]
        .as_array()
        .unwrap_or_else(|| panic!("no labels: {object}"))
        .iter()
        .map(|l| {
            let l = l.as_str().expect("label");
            LABELS
                .iter()
                .position(|spellings| spellings[0] == l)
                .unwrap_or_else(|| {
                    panic!("label {l:?} is not in the bot's first spelling: {object}")
                })
        })
        .collect();
    let flagged = object["flagged"]
        .as_bool()
        .unwrap_or_else(|| panic!("no flagged: {object}"));
    let flagged_at = object.get("flagged_at").is_some_and(|v| !v.is_null());
    assert_eq!(
        flagged, flagged_at,
        "flagged_at is set exactly when flagged: {object}"
    );
    let note = object
        .get("flag_note")
        .and_then(|n| n.as_str())
        .map(String::from);
    if !flagged {
        assert!(
            note.is_none(),
            "an unflagged conversation has no note: {object}"
        );
    }
    State {
        labels,
        flag: flagged.then_some(note),
    }
}

/// What one client thread did.
#[derive(Default)]
struct Outcome {
    /// Indices (into the plan) of acknowledged actions, in order.
    acked: Vec<usize>,
    /// The action whose request got no answer (its effect is unknown).
    uncertain: Option<usize>,
    failures: Vec<String>,
}

/// Runs the plan from `THREADS` client threads; stops a thread at its first unanswered request.
/// `acked` counts acknowledged actions across threads.
fn run_plan(
    base: &str,
    ids: &[String],
    actions: &[Action],
    start: &[State],
    acked: &AtomicUsize,
) -> Vec<Outcome> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                scope.spawn(move || {
                    let client = Client::new(base);
                    let mut outcome = Outcome::default();
                    // This thread's view of the components it owns.
                    let mut mine: HashMap<usize, State> = HashMap::new();
                    for (index, action) in actions.iter().enumerate().filter(|(_, a)| a.thread() == t) {
                        let id = &ids[action.conv];
                        let (method, path, body) = action.request(id);
                        match client.try_req(method, &path, body.as_deref()) {
                            Err(_) => {
                                outcome.uncertain = Some(index);
                                break;
                            }
                            Ok(answer) if answer.status != 200 => {
                                outcome.failures.push(format!(
                                    "{method} {path} {body:?}: {} {}",
                                    answer.status, answer.body
                                ));
                            }
                            Ok(answer) => {
                                outcome.acked.push(index);
                                acked.fetch_add(1, Ordering::SeqCst);
                                let state = mine.entry(action.conv).or_insert_with(|| start[action.conv].clone());
                                action.apply(state);
                                let object = answer.json();
                                let seen = state_of(&object);
                                if object["id"] != json!(id) || !action.component_matches(state, &seen) {
                                    outcome.failures.push(format!(
                                        "{method} {path} {body:?}: expected {:?} for {:?}, the answer shows {seen:?}: {object}",
                                        state, action.item
                                    ));
                                }
                            }
                        }
                    }
                    outcome
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("client thread"))
            .collect()
    })
}

/// Reads every conversation of `ids` from the store (`GET …/conversations/{id}`), in parallel.
fn read_states(base: &str, ids: &[String]) -> Vec<State> {
    let size = ids.len().div_ceil(4);
    let chunks: Vec<(usize, &[String])> = ids.chunks(size).enumerate().collect();
    let mut out = vec![State::default(); ids.len()];
    std::thread::scope(|scope| {
        let workers: Vec<_> = chunks
            .iter()
            .map(|&(n, chunk)| {
                scope.spawn(move || {
                    let client = Client::new(base);
                    let states: Vec<State> = chunk
                        .iter()
                        .map(|id| {
                            state_of(&client.ok(
                                "GET",
                                &format!("/v1/bots/{BOT}/conversations/{id}"),
                                None,
                            ))
                        })
                        .collect();
                    (n, states)
                })
            })
            .collect();
        for worker in workers {
            let (n, states) = worker.join().expect("reader");
            for (i, state) in states.into_iter().enumerate() {
                out[n * size + i] = state;
            }
        }
    });
    out
}

/// Asserts that the store, the search filters, the facets and `/labels` all show exactly
/// `expected` for `ids` (and nothing for any other conversation of the bot).
fn assert_reflects(client: &Client, ids: &[String], expected: &[State], what: &str) {
    let all = all_time();
    // The store, at once.
    let stored = read_states(&client.base, ids);
    let wrong: Vec<String> = (0..ids.len())
        .filter(|&i| stored[i] != expected[i])
        .map(|i| {
            format!(
                "{}: expected {:?}, stored {:?}",
                ids[i], expected[i], stored[i]
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{what}: {} conversations differ in the store:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // Search: every conversation object.
    let index_of: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let listed = client.all_conversations(BOT, &all);
    let mut wrong = Vec::new();
    let mut seen = BTreeSet::new();
    for object in &listed {
        let id = object["id"].as_str().expect("id");
        seen.insert(id.to_string());
        let state = state_of(object);
        let want = index_of
            .get(id)
            .map(|&i| expected[i].clone())
            .unwrap_or_default();
        if state != want {
            wrong.push(format!("{id}: expected {want:?}, search shows {state:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{what}: {} conversations differ in search:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    let missing: Vec<&String> = ids.iter().filter(|id| !seen.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{what}: conversations missing from search: {missing:?}"
    );

    // label= (in another spelling), one at a time and two together.
    let with = |k: usize| -> BTreeSet<String> {
        (0..ids.len())
            .filter(|&i| expected[i].labels.contains(&k))
            .map(|i| ids[i].clone())
            .collect()
    };
    for (k, spellings) in LABELS.iter().enumerate() {
        let variant = spellings[spellings.len() - 1];
        let query = format!("{all}&label={}", encode(variant));
        assert_eq!(
            client.search_ids(BOT, &query),
            with(k),
            "{what}: label={variant:?}"
        );
    }
    let query = format!(
        "{all}&label={}&label={}",
        encode(LABELS[0][1]),
        encode(LABELS[3][2])
    );
    let union: BTreeSet<String> = with(0).union(&with(3)).cloned().collect();
    assert_eq!(client.search_ids(BOT, &query), union, "{what}: two labels");

    // flagged=
    let flagged: BTreeSet<String> = (0..ids.len())
        .filter(|&i| expected[i].flag.is_some())
        .map(|i| ids[i].clone())
        .collect();
    assert_eq!(
        client.search_ids(BOT, &format!("{all}&flagged=true")),
        flagged,
        "{what}: flagged=true"
    );
    let unflagged = listed.len() - flagged.len();
    assert_eq!(
        client.total(BOT, &format!("{all}&flagged=false")),
        unflagged as u64,
        "{what}: flagged=false"
    );

    // Facets and /labels.
    let counts: BTreeMap<String, u64> = (0..LABELS.len())
        .map(|k| (canonical(k).to_string(), with(k).len() as u64))
        .filter(|(_, n)| *n > 0)
        .collect();
    let page = client.ok(
        "GET",
        &format!("/v1/bots/{BOT}/conversations?{all}&limit=1"),
        None,
    );
    assert_eq!(page["total"], json!(listed.len()));
    assert_eq!(
        facet(&page["facets"]["label"]),
        counts,
        "{what}: label facet"
    );
    let flag_facet: BTreeMap<String, u64> =
        [("true", flagged.len() as u64), ("false", unflagged as u64)]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.to_string(), n))
            .collect();
    assert_eq!(
        facet(&page["facets"]["flagged"]),
        flag_facet,
        "{what}: flagged facet"
    );
    // The facet of one dimension ignores its own filter (disjunctive).
    let filtered = client.ok(
        "GET",
        &format!("/v1/bots/{BOT}/conversations?{all}&flagged=true&limit=1"),
        None,
    );
    assert_eq!(
        facet(&filtered["facets"]["flagged"]),
        flag_facet,
        "{what}: flagged facet under flagged=true"
    );
    let filtered = client.ok(
        "GET",
        &format!(
            "/v1/bots/{BOT}/conversations?{all}&label={}&limit=1",
            encode(LABELS[1][2])
        ),
        None,
    );
    assert_eq!(
        facet(&filtered["facets"]["label"]),
        counts,
        "{what}: label facet under label="
    );
    let labels = client.ok("GET", &format!("/v1/bots/{BOT}/labels?{all}"), None);
    assert_eq!(labels_list(&labels), counts, "{what}: /labels");
}

/// Extra messages for the concurrent ingest: follow-ups that extend conversations whose
/// end user has no other conversation on that channel, and new conversations 40 days earlier.
fn extra_messages(
    messages: &[GenMessage],
    conversation_of: &HashMap<String, String>,
) -> (Vec<GenMessage>, BTreeMap<String, u64>) {
    // Per server conversation: user, channel, first and last timestamp, explicit session.
    struct Info<'a> {
        user: &'a str,
        channel: &'a str,
        first: i64,
        last: i64,
        session: bool,
    }
    let mut info: BTreeMap<&str, Info> = BTreeMap::new();
    for m in messages {
        let ts = micros(&m.timestamp);
        let entry = info.entry(conversation_of[&m.id].as_str()).or_insert(Info {
            user: &m.user_id,
            channel: &m.channel,
            first: ts,
            last: ts,
            session: false,
        });
        entry.first = entry.first.min(ts);
        entry.last = entry.last.max(ts);
        entry.session |= m.session_id.is_some();
    }
    let mut per_user: HashMap<(&str, &str), Vec<(i64, i64)>> = HashMap::new();
    for i in info.values() {
        per_user
            .entry((i.user, i.channel))
            .or_default()
            .push((i.first, i.last));
    }
    // A follow-up 1-2 s after the end extends the conversation, and can't bridge it to
    // another one when no other conversation of that user and channel is near.
    const MINUTE: i64 = 60_000_000;
    let margin = |channel: &str| match channel {
        "web" | "whatsapp" => 25 * 60 * MINUTE,
        _ => 60 * MINUTE,
    };
    let mut extended = BTreeMap::new();
    let mut follow_ups = Vec::new();
    for (conv, i) in &info {
        let near = |&(first, last): &(i64, i64)| {
            (first, last) != (i.first, i.last)
                && first <= i.last + margin(i.channel)
                && last >= i.first - margin(i.channel)
        };
        if i.session || per_user[&(i.user, i.channel)].iter().any(near) || extended.len() >= 300 {
            continue;
        }
        let (user, channel, last) = (i.user, i.channel, i.last);
        for (n, role, text) in [
            (1, "user", "one more question about my order"),
            (2, "bot", "Sure, let me check."),
        ] {
            let mut m = crate::review::msg(
                &format!("ap-{conv}-{n}"),
                BOT,
                user,
                role,
                text,
                &rfc3339(last + n * 1_000_000),
            );
            m.channel = channel.to_string();
            follow_ups.push(m);
        }
        extended.insert(conv.to_string(), 2);
    }
    let mut config = GenConfig::new(0xF00D, 250, end() - chrono::Duration::days(40));
    config.bots = vec![BOT.to_string()];
    config.span_days = 3;
    let mut fresh = Vec::new();
    generate(&config, |mut m| {
        m.id = format!("n-{}", m.id);
        m.user_id = format!("new-{}", m.user_id);
        if let Some(s) = &mut m.session_id {
            *s = format!("new-{s}");
        }
        fresh.push(m);
    });
    // Interleave so both kinds arrive throughout the round.
    let mut out = Vec::new();
    let (mut a, mut b) = (follow_ups.chunks(40), fresh.chunks(200));
    loop {
        match (a.next(), b.next()) {
            (None, None) => break,
            (x, y) => {
                out.extend_from_slice(x.unwrap_or_default());
                out.extend_from_slice(y.unwrap_or_default());
            }
        }
    }
    (out, extended)
}

#[test]
fn review_concurrent_labels_and_flags_match_the_oracle_and_survive_kill9() {
    let started = Instant::now();
    let root = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(root.path(), &[]);
    let base = server.base().to_string();
    let client = Client::new(&base);

    let messages = generated(0x5EED_0003, 1000, &[BOT], 30);
    server.ingest_parallel(&messages, 2000, 2);
    server.wait_indexed();
    let conversation_of: HashMap<String, String> =
        server.message_conversations(BOT).into_iter().collect();
    assert_eq!(conversation_of.len(), messages.len());
    let ids: Vec<String> = conversation_of
        .values()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(
        ids.len() >= 950,
        "expected about 1000 conversations, got {}",
        ids.len()
    );
    let counts_before: HashMap<String, u64> = client
        .all_conversations(BOT, &all_time())
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["message_count"].as_u64().unwrap(),
            )
        })
        .collect();
    let (extra, extended) = extra_messages(&messages, &conversation_of);
    eprintln!(
        "review_concurrency: {} conversations, {} extended, {} extra messages",
        ids.len(),
        extended.len(),
        extra.len()
    );
    assert!(
        extended.len() >= 100,
        "too few conversations to extend: {}",
        extended.len()
    );

    // Conversation 0 carries every label in its first spelling.
    let mut state = vec![State::default(); ids.len()];
    for k in 0..LABELS.len() {
        let path = format!(
            "/v1/bots/{BOT}/conversations/{}/labels/{}",
            ids[0],
            encode(canonical(k))
        );
        client.ok("PUT", &path, None);
        state[0].labels.insert(k);
    }
    eprintln!("review_concurrency: set-up {:?}", started.elapsed());

    // Round 1: actions from THREADS clients while the extra messages are ingested.
    let round1 = plan(0xACE1, 5000, ids.len());
    let acked = AtomicUsize::new(0);
    let ingest_done = AtomicBool::new(false);
    let ingest_errors = Mutex::new(Vec::new());
    let outcomes = std::thread::scope(|scope| {
        scope.spawn(|| {
            let ingest = Client::new(&base);
            for batch in extra.chunks(120) {
                let body = serde_json::to_string(batch).unwrap();
                let answer = ingest.req("POST", "/v1/messages", Some(&body));
                if answer.status != 200 || answer.json()["accepted"] != json!(batch.len()) {
                    ingest_errors
                        .lock()
                        .unwrap()
                        .push(format!("{}: {}", answer.status, answer.body));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            ingest_done.store(true, Ordering::SeqCst);
        });
        run_plan(&base, &ids, &round1, &state, &acked)
    });
    assert!(ingest_done.load(Ordering::SeqCst));
    assert_eq!(
        ingest_errors.into_inner().unwrap(),
        Vec::<String>::new(),
        "concurrent ingest"
    );
    for outcome in &outcomes {
        assert_eq!(outcome.failures, Vec::<String>::new(), "round 1 requests");
        assert!(
            outcome.uncertain.is_none(),
            "round 1: a request got no answer"
        );
    }
    assert_eq!(acked.load(Ordering::SeqCst), round1.len());
    for action in &round1 {
        action.apply(&mut state[action.conv]);
    }
    eprintln!("review_concurrency: round 1 done {:?}", started.elapsed());

    server.wait_indexed();
    assert_reflects(&client, &ids, &state, "after round 1");
    // The follow-ups landed in the conversations they extend (no merges, no new ids).
    let after: HashMap<String, u64> = client
        .all_conversations(BOT, &all_time())
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["message_count"].as_u64().unwrap(),
            )
        })
        .collect();
    for id in &ids {
        let want = counts_before[id] + extended.get(id).copied().unwrap_or(0);
        assert_eq!(after[id], want, "message_count of {id}");
    }
    assert!(
        after.len() > ids.len(),
        "the new conversations are searchable"
    );
    eprintln!(
        "review_concurrency: round 1 checked {:?}",
        started.elapsed()
    );

    // Round 2: the same, cut by kill -9 once KILL_AFTER actions are acknowledged.
    let round2 = plan(0xB0B2, 4000, ids.len());
    let acked = AtomicUsize::new(0);
    let outcomes = std::thread::scope(|scope| {
        let runner = scope.spawn(|| run_plan(&base, &ids, &round2, &state, &acked));
        let waiting = Instant::now();
        while acked.load(Ordering::SeqCst) < KILL_AFTER && !runner.is_finished() {
            assert!(
                waiting.elapsed() < Duration::from_secs(120),
                "round 2 makes no progress"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        server.kill9();
        runner.join().expect("round 2 clients")
    });
    let acked_total: usize = outcomes.iter().map(|o| o.acked.len()).sum();
    let uncertain: Vec<usize> = outcomes.iter().filter_map(|o| o.uncertain).collect();
    for outcome in &outcomes {
        assert_eq!(outcome.failures, Vec::<String>::new(), "round 2 requests");
    }
    assert!(
        acked_total >= KILL_AFTER && acked_total < round2.len(),
        "the kill fell in the middle: {acked_total} acked"
    );
    eprintln!(
        "review_concurrency: killed after {acked_total} acknowledged actions, {} in flight, {:?}",
        uncertain.len(),
        started.elapsed()
    );

    // What must be there: every acknowledged action; the unanswered ones may or may not be.
    let mut must = state.clone();
    let mut acked_set: Vec<usize> = outcomes
        .iter()
        .flat_map(|o| o.acked.iter().copied())
        .collect();
    acked_set.sort_unstable();
    for &i in &acked_set {
        round2[i].apply(&mut must[round2[i].conv]);
    }
    server.restart();
    server.wait_indexed();
    let client = Client::new(server.base());
    let stored = read_states(server.base(), &ids);
    let mut wrong = Vec::new();
    for i in 0..ids.len() {
        // Component by component: as acknowledged, or with its one unanswered action applied.
        let items = (0..LABELS.len()).map(Item::Label).chain([Item::Flag]);
        for item in items {
            let probe = Action {
                conv: i,
                item,
                on: false,
                spelling: "",
                note: None,
            };
            if probe.component_matches(&must[i], &stored[i]) {
                continue;
            }
            let explained = uncertain.iter().any(|&u| {
                let action = &round2[u];
                let mut maybe = must[i].clone();
                action.apply(&mut maybe);
                action.conv == i
                    && action.item == item
                    && action.component_matches(&maybe, &stored[i])
            });
            if !explained {
                wrong.push(format!(
                    "{} {item:?}: acknowledged state {:?}, after restart {:?}",
                    ids[i], must[i], stored[i]
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "acknowledged actions lost by kill -9:\n{}",
        wrong.join("\n")
    );
    // The index, rebuilt or caught up after the crash, agrees with the store.
    assert_reflects(&client, &ids, &stored, "after kill -9 and restart");
    eprintln!("review_concurrency: done {:?}", started.elapsed());
}
