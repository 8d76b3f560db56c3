//! What the bot misses (issue #19): the unidentified inputs of the matching
//! conversations, clustered, through HTTP against the real binary.

use crate::common::{Rng, Server, encode, message, rfc3339};
use chrono::Utc;
use convlog_gen::GenMessage;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// Planted families of paraphrases: (name, sizes' order, the words of its
/// need, how people ask it). Sizes 40, 25, 15, 8, 4 in this order.
const FAMILIES: &[(&str, usize, &[&str])] = &[
    (
        "address",
        40,
        &[
            "I want to change my delivery address",
            "how do I change the delivery address",
            "change delivery address",
            "can I change my delivery address please",
            "need to change the delivery address for my order",
            "change my shipping address",
            "please change delivery address",
            "how can i change my delivery adress",
        ],
    ),
    (
        "subscription",
        25,
        &[
            "cancel my subscription",
            "how do I cancel the subscription",
            "I want to cancel my subscription now",
            "cancel subscription please",
            "can you cancel my subscription",
        ],
    ),
    (
        "paypal",
        15,
        &[
            "can I pay with paypal",
            "pay with paypal",
            "can i pay using paypal",
            "is it possible to pay with paypal",
        ],
    ),
    (
        "human",
        8,
        &[
            "talk to a human agent",
            "I want to talk to a human",
            "can I talk to a real human agent",
        ],
    ),
    (
        "giftcard",
        4,
        &["gift card balance", "check my gift card balance"],
    ),
];

/// What the bot understands (answered by identified replies): never an insight.
const UNDERSTOOD: &[&str] = &[
    "hey what are your opening hours",
    "hi I want to know the opening hours please",
    "hello, is it possible to track my parcel?",
    "how do I track my parcel now",
    "can you tell me the price of the blue sneakers",
    "hi can you help me with my order",
    "where is my parcel pls",
    "do you have the red sneakers in my size",
    "how can I reach you by phone",
    "ok thanks for the help!",
    "ok",
    "thanks",
    "hey",
];

/// A near duplicate of `text`: case, punctuation, now and then a filler word.
fn vary(rng: &mut Rng, text: &str) -> String {
    let mut out = match rng.below(4) {
        0 => text.to_uppercase(),
        1 => {
            let mut chars = text.chars();
            let first = chars.next().unwrap().to_uppercase().to_string();
            first + chars.as_str()
        }
        _ => text.to_string(),
    };
    if rng.chance(0.3) {
        out = format!("{} {out}", *rng.pick(&["hi", "hello", "hey", "ok"]));
    }
    out.push_str(rng.pick::<&str>(&["", "?", "??", "!", ".", " pls", " thanks"]));
    out
}

/// A word no one else writes: noise the bot didn't understand either.
fn nonsense_word(rng: &mut Rng) -> String {
    const SYLLABLES: &[&str] = &[
        "ka", "zu", "mip", "tor", "vel", "qua", "rin", "bex", "lo", "sna", "dru", "fep", "gim",
        "hox", "jal", "wup", "yen", "cro", "plu", "sti",
    ];
    (0..3).map(|_| *rng.pick(SYLLABLES)).collect()
}

struct Planted {
    messages: Vec<GenMessage>,
    /// Unidentified input message id → family name ("noise" for noise).
    inputs: HashMap<String, String>,
    /// Message ids of understood inputs.
    understood: HashSet<String>,
    /// Inputs on whatsapp, per family.
    whatsapp: HashMap<String, usize>,
}

fn plant(bot: &str, now: i64) -> Planted {
    let mut rng = Rng::new(19);
    let mut planted = Planted {
        messages: Vec::new(),
        inputs: HashMap::new(),
        understood: HashSet::new(),
        whatsapp: HashMap::new(),
    };
    let mut unidentified: Vec<(String, String)> = Vec::new();
    for (name, size, texts) in FAMILIES {
        for i in 0..*size {
            unidentified.push((name.to_string(), vary(&mut rng, texts[i % texts.len()])));
        }
    }
    for _ in 0..60 {
        let words = 2 + rng.below(3);
        let text: Vec<String> = (0..words).map(|_| nonsense_word(&mut rng)).collect();
        unidentified.push(("noise".into(), text.join(" ")));
    }
    // Shuffle, so families arrive interleaved.
    for i in (1..unidentified.len()).rev() {
        let j = rng.below(i + 1);
        unidentified.swap(i, j);
    }
    let mut n = 0;
    let mut push = |planted: &mut Planted,
                    user: &str,
                    channel: &str,
                    role: &str,
                    text: &str,
                    at: i64,
                    fallback: bool| {
        n += 1;
        let id = format!("m{n}");
        let mut m = message(&id, bot, user, text, &rfc3339(at));
        m.channel = channel.into();
        m.role = role.into();
        if role == "bot" {
            m.unidentified = Some(fallback);
            if !fallback {
                m.intent = Some("known".into());
            }
        }
        planted.messages.push(m);
        id
    };
    let start = now - 3_600_000_000;
    for (c, (family, text)) in unidentified.iter().enumerate() {
        let user = format!("user-{c}");
        let channel = if c % 3 == 0 { "whatsapp" } else { "web" };
        let at = start + c as i64 * 10_000_000;
        // An understood exchange first, then the input a fallback answers.
        let understood = push(
            &mut planted,
            &user,
            channel,
            "user",
            rng.pick::<&str>(UNDERSTOOD),
            at,
            false,
        );
        planted.understood.insert(understood);
        push(
            &mut planted,
            &user,
            channel,
            "bot",
            "Sure, here you go.",
            at + 1_000_000,
            false,
        );
        let input = push(
            &mut planted,
            &user,
            channel,
            "user",
            text,
            at + 2_000_000,
            false,
        );
        push(
            &mut planted,
            &user,
            channel,
            "bot",
            "Sorry, I didn't get that.",
            at + 3_000_000,
            true,
        );
        if c % 5 == 0 {
            // A second fallback to the same input counts it once.
            push(
                &mut planted,
                &user,
                channel,
                "bot",
                "Could you rephrase?",
                at + 4_000_000,
                true,
            );
        }
        if channel == "whatsapp" {
            *planted.whatsapp.entry(family.clone()).or_default() += 1;
        }
        planted.inputs.insert(input, family.clone());
    }
    // Understood-only conversations, so common words are common in the index.
    for c in 0..300 {
        let user = format!("regular-{c}");
        let at = start + c as i64 * 7_000_000;
        for turn in 0..3 {
            let id = push(
                &mut planted,
                &user,
                "web",
                "user",
                rng.pick::<&str>(UNDERSTOOD),
                at + turn * 2_000_000,
                false,
            );
            planted.understood.insert(id);
            push(
                &mut planted,
                &user,
                "web",
                "bot",
                "Happy to help: here is what I found for you.",
                at + turn * 2_000_000 + 1_000_000,
                false,
            );
        }
    }
    // Two days ago: outside the default range.
    let old = now - 2 * 86_400_000_000;
    for i in 0..3 {
        let user = format!("old-{i}");
        push(
            &mut planted,
            &user,
            "web",
            "user",
            "change my delivery address",
            old + i,
            false,
        );
        push(
            &mut planted,
            &user,
            "web",
            "bot",
            "Sorry?",
            old + i + 1,
            true,
        );
    }
    planted
}

fn clusters(answer: &Value) -> &Vec<Value> {
    answer["clusters"].as_array().expect("clusters")
}

#[test]
fn planted_families_come_back_as_the_top_clusters_in_order() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), &[]);
    let now = Utc::now().timestamp_micros();
    let planted = plant("shop", now);
    for chunk in planted.messages.chunks(500) {
        server.ingest(chunk);
    }
    server.wait_settled();

    let answer = server.get_ok("/v1/bots/shop/insights/unidentified?limit=500");
    let total = planted.inputs.len() as u64;
    assert_eq!(answer["total_inputs"], total, "{answer}");
    let all = clusters(&answer);
    let sum: u64 = all.iter().map(|c| c["inputs"].as_u64().unwrap()).sum();
    assert_eq!(sum, total, "every input is in one cluster");
    assert_eq!(answer["total_clusters"], all.len() as u64);
    let summary: Vec<String> = all
        .iter()
        .take(8)
        .map(|c| format!("{} {} {}", c["inputs"], c["label"], c["terms"]))
        .collect();
    let summary = summary.join("\n");

    for (rank, (family, size, texts)) in FAMILIES.iter().enumerate() {
        let cluster = &all[rank];
        let inputs = cluster["inputs"].as_u64().unwrap() as usize;
        // Mostly one family: at least 80% of it, and little else.
        assert!(
            inputs * 10 >= size * 8 && inputs * 10 <= size * 12,
            "cluster {rank} should be {family} ({size}); the top ones:\n{summary}"
        );
        let examples = cluster["examples"].as_array().unwrap();
        assert!(!examples.is_empty() && examples.len() <= 5, "{cluster:#}");
        for example in examples {
            let id = example["message_id"].as_str().unwrap();
            assert_eq!(
                planted.inputs.get(id),
                Some(&family.to_string()),
                "{cluster:#}"
            );
            assert!(example["conversation_id"].as_str().is_some());
        }
        let texts_of_family: Vec<String> = texts.iter().map(|t| t.to_lowercase()).collect();
        let label = cluster["label"].as_str().unwrap();
        assert!(
            label
                .split(' ')
                .all(|word| texts_of_family.iter().any(|t| t.contains(word))),
            "label {label:?} of {family}"
        );
        assert!(cluster["conversations"].as_u64().unwrap() as usize <= inputs);
    }
    assert_eq!(all[0]["label"], "change delivery address", "{:#}", all[0]);
    // Understood inputs never appear, not even as examples.
    for cluster in all {
        for example in cluster["examples"].as_array().unwrap() {
            let id = example["message_id"].as_str().unwrap();
            assert!(!planted.understood.contains(id), "{cluster:#}");
        }
        for term in cluster["terms"].as_array().unwrap() {
            let term = term.as_str().unwrap();
            assert!(
                !["opening", "parcel", "sneakers"].contains(&term),
                "{cluster:#}"
            );
        }
    }

    // Filters narrow the counts: one channel, then one family's words.
    let answer = server.get_ok("/v1/bots/shop/insights/unidentified?channel=whatsapp&limit=500");
    let on_whatsapp: usize = planted.whatsapp.values().sum();
    assert_eq!(answer["total_inputs"], on_whatsapp as u64);
    let top = &clusters(&answer)[0];
    assert_eq!(top["inputs"], planted.whatsapp["address"] as u64, "{top:#}");
    let answer = server.get_ok(&format!(
        "/v1/bots/shop/insights/unidentified?q={}",
        encode("subscription")
    ));
    assert_eq!(
        answer["clusters"][0]["label"], "cancel subscription",
        "{answer:#}"
    );
    assert!(answer["total_inputs"].as_u64().unwrap() <= 30);
    // The whole time range holds the three old inputs too.
    let answer = server.get_ok(&format!(
        "/v1/bots/shop/insights/unidentified?from={}&limit=1",
        encode(&rfc3339(now - 3 * 86_400_000_000))
    ));
    assert_eq!(answer["total_inputs"], total + 3);
    assert_eq!(clusters(&answer).len(), 1);

    // Another bot: nothing.
    let answer = server.get_ok("/v1/bots/elsewhere/insights/unidentified");
    assert_eq!(answer["total_inputs"], 0);
    assert_eq!(clusters(&answer).len(), 0);

    // Bad parameters: 400 naming the parameter.
    server.assert_400_naming(
        "/v1/bots/shop/insights/unidentified",
        &[
            ("limit=0", "limit"),
            ("limit=501", "limit"),
            ("limit=many", "limit"),
            ("cursor=abc", "cursor"),
            ("sort=relevance", "sort"),
            ("colour=red", "colour"),
            ("from=yesterday", "from"),
        ],
    );
    let reply = server.get("/v1/bots/shop/insights/unidentified?q=%22unclosed");
    assert_eq!(reply.status, 400, "{}", reply.body);
}
