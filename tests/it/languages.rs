//! Issue #16: search that understands how people write. A multilingual bot's
//! messages (English, German, Spanish, French, Portuguese, Russian, Arabic,
//! Hindi, Turkish, Japanese, Chinese) and what each query must find, written
//! by hand from the languages' grammar (the oracle), not from the index.

use crate::common::{Server, encode};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// One message of the corpus: (id, role, `lang` given or not, intent, text).
type Line = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    &'static str,
);

/// The corpus. Every message is its own conversation (its own user).
const CORPUS: &[Line] = &[
    (
        "en1",
        "user",
        None,
        None,
        "I asked for a refund yesterday but nothing happened",
    ),
    (
        "en2",
        "bot",
        None,
        None,
        "Your refunds are processed within five business days",
    ),
    (
        "en3",
        "user",
        None,
        None,
        "The payment was refunded to my card this morning, thanks",
    ),
    (
        "en4",
        "user",
        None,
        None,
        "Please do not refuse my request, I really need help with the order",
    ),
    (
        "en5",
        "user",
        Some("en-GB"),
        None,
        "Did the courier leave my package at the cafe on the corner",
    ),
    (
        "de1",
        "user",
        Some("de"),
        None,
        "Wo ist meine Bestellung? Ich warte seit zwei Wochen.",
    ),
    (
        "de2",
        "bot",
        Some("de-AT"),
        None,
        "Ihre Bestellungen werden morgen versendet.",
    ),
    (
        "es1",
        "user",
        Some("es"),
        Some("order_status"),
        "Quiero saber el estado de mi pedido, por favor",
    ),
    (
        "es2",
        "bot",
        Some("es"),
        None,
        "Todos los pedidos llegan en tres días hábiles",
    ),
    (
        "fr1",
        "user",
        Some("fr"),
        None,
        "Je voudrais un remboursement pour ma commande annulée",
    ),
    (
        "fr2",
        "bot",
        Some("fr"),
        None,
        "Les remboursements sont effectués sous cinq jours ouvrés",
    ),
    (
        "fr3",
        "user",
        Some("fr"),
        None,
        "On se retrouve au café près de la gare demain matin",
    ),
    (
        "pt1",
        "user",
        Some("pt-BR"),
        None,
        "Meu pedido ainda não chegou, podem verificar?",
    ),
    (
        "pt2",
        "bot",
        Some("pt"),
        None,
        "Os pedidos são enviados todos os dias úteis",
    ),
    (
        "ru1",
        "user",
        Some("ru"),
        Some("order_status"),
        "Где мой заказ? Я жду уже две недели.",
    ),
    (
        "ru2",
        "bot",
        Some("ru"),
        None,
        "Ваши заказы будут доставлены завтра",
    ),
    (
        "ar1",
        "user",
        Some("ar"),
        None,
        "أريد استرداد المبلغ من فضلك",
    ),
    ("ar2", "user", Some("ar"), None, "شُكْرًا لَكَ عَلَى المُسَاعَدَةِ"),
    ("hi1", "user", Some("hi"), None, "मेरा ऑर्डर अभी तक नहीं आया है"),
    (
        "tr1",
        "user",
        Some("tr"),
        None,
        "İADE talebim hâlâ işlenmedi",
    ),
    ("tr2", "user", Some("tr"), None, "Siparişlerim hâlâ gelmedi"),
    ("ja1", "user", Some("ja"), None, "注文がまだ届いていません"),
    ("zh1", "user", Some("zh"), None, "我想申请退款"),
    ("zh2", "bot", Some("zh"), None, "退货和退款政策"),
];

/// (query, the messages it must find, exactly).
const EXPECTED: &[(&str, &[&str])] = &[
    // Inflections, in the message's language; `refund` is not `refuse`.
    ("refund", &["en1", "en2", "en3"]),
    ("refunds", &["en1", "en2", "en3"]),
    ("REFUNDED", &["en1", "en2", "en3"]),
    ("refuse", &["en4"]),
    ("Bestellungen", &["de1", "de2"]),
    ("bestellung", &["de1", "de2"]),
    // Spanish and Portuguese share the word: each in its own language.
    ("pedidos", &["es1", "es2", "pt1", "pt2"]),
    ("remboursements", &["fr1", "fr2"]),
    ("заказы", &["ru1", "ru2"]),
    ("ЗАКАЗ", &["ru1", "ru2"]),
    // Accents and case, in every script that has them.
    ("cafe", &["en5", "fr3"]),
    ("CAFÉ", &["en5", "fr3"]),
    ("iade", &["tr1"]),
    ("sipariş", &["tr2"]),
    ("siparis", &["tr2"]),
    ("المساعدة", &["ar2"]),
    ("استرداد", &["ar1"]),
    ("ऑर्डर", &["hi1"]),
    // Unspaced scripts: any part of two or more characters.
    ("注文", &["ja1"]),
    ("届いて", &["ja1"]),
    ("退款", &["zh1", "zh2"]),
    ("申请退款", &["zh1"]),
    ("款政", &["zh2"]),
    // Syntax keeps working on analysed text.
    ("user:refund", &["en1", "en3"]),
    ("bot:pedidos", &["es2", "pt2"]),
    ("\"refund yesterday\"", &["en1"]),
    ("\"refunds are processed\"", &["en2"]),
    ("\"yesterday refund\"", &[]),
    ("refund -card", &["en1", "en2"]),
    ("refund AND NOT card", &["en1", "en2"]),
    ("(cafe OR заказ) -gare", &["en5", "ru1", "ru2"]),
    // Prefixes and typos match the words as written.
    ("refu*", &["en1", "en2", "en3", "en4"]),
    ("bestell*", &["de1", "de2"]),
    ("user:refu*", &["en1", "en3", "en4"]),
    ("refnud~", &["en1"]),
    ("refnud~2", &["en1", "en2"]),
    ("bestelung~", &["de1"]),
    // Fields.
    ("intent:order_status", &["es1", "ru1"]),
    ("intent:order_status pedido", &["es1"]),
    ("-intent:order_status заказ", &["ru2"]),
];

fn corpus(bot: &str, timestamp: &str) -> Value {
    let messages: Vec<Value> = CORPUS
        .iter()
        .map(|(id, role, lang, intent, text)| {
            let mut message = json!({
                "id": id, "bot_id": bot, "user_id": format!("u-{id}"), "channel": "web",
                "role": role, "text": text, "timestamp": timestamp,
            });
            if let Some(lang) = lang {
                message["lang"] = json!(lang);
            }
            if let Some(intent) = intent {
                message["intent"] = json!(intent);
            }
            message
        })
        .collect();
    Value::Array(messages)
}

fn found(server: &Server, bot: &str, q: &str) -> BTreeSet<String> {
    let page = server.get_ok(&format!(
        "/v1/bots/{bot}/messages?limit=100&from=now-1d&q={}",
        encode(q)
    ));
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

/// Ingests `messages` (a JSON array), asserting 200.
fn ingest(server: &Server, messages: &Value) {
    let body = serde_json::to_vec(messages).unwrap();
    let reply = server.post("/v1/messages", "application/json", &body);
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// A server holding the corpus as bot `multi`.
fn with_corpus(dir: &std::path::Path) -> Server {
    let server = Server::start(dir, &[]);
    ingest(&server, &corpus("multi", &recent()));
    server
}

fn recent() -> String {
    (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339()
}

#[test]
fn a_multilingual_bots_queries_find_what_the_oracle_says() {
    let dir = tempfile::tempdir().unwrap();
    let server = with_corpus(dir.path());
    server.wait_indexed();
    let check = |when: &str| {
        let mut wrong = Vec::new();
        for (q, expected) in EXPECTED {
            let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
            let got = found(&server, "multi", q);
            if got != expected {
                wrong.push(format!("{q:?}: expected {expected:?}, got {got:?}"));
            }
        }
        assert!(wrong.is_empty(), "{when}:\n{}", wrong.join("\n"));
    };
    check("indexed at ingest");
    // A reindex analyses each message again in the language it was given
    // (`lang`, kept in the store), not in what detection would say.
    let job = server.post("/v1/admin/reindex", "application/json", b"");
    assert_eq!(job.status, 202, "{}", job.body);
    let id = job.json()["id"].as_str().unwrap().to_string();
    let started = std::time::Instant::now();
    while server.get_ok(&format!("/v1/admin/jobs/{id}"))["state"] != "succeeded" {
        assert!(
            started.elapsed().as_secs() < 120,
            "the reindex did not succeed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    check("after a reindex");

    // Conversation search keeps the same conversations (one per message here).
    let page = server.get_ok(&format!(
        "/v1/bots/multi/conversations?from=now-1d&q={}",
        encode("pedidos")
    ));
    assert_eq!(page["total"], 4, "{page}");
    // Snippets and highlights mark the words that matched, inflected or not.
    let page = server.get_ok("/v1/bots/multi/messages?from=now-1d&q=refund&limit=100");
    let snippets: BTreeSet<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["snippet"].as_str().unwrap())
        .collect();
    for marked in ["<b>refund</b>", "<b>refunds</b>", "<b>refunded</b>"] {
        assert!(
            snippets.iter().any(|s| s.contains(marked)),
            "{marked}: {snippets:?}"
        );
    }
    let page = server.get_ok("/v1/bots/multi/messages?from=now-1d&q=%E9%80%80%E6%AC%BE&limit=100");
    let first = page["messages"][0]["snippet"].as_str().unwrap();
    assert!(first.contains("<b>退款</b>"), "{first}");
    let page = server.get_ok("/v1/bots/multi/messages?from=now-1d&q=refu*&limit=100");
    assert!(
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["snippet"].as_str().unwrap().contains("<b>refuse</b>")),
        "{page}"
    );
}

#[test]
fn bad_syntax_is_a_400_naming_the_problem_and_never_a_silent_zero() {
    let dir = tempfile::tempdir().unwrap();
    let server = with_corpus(dir.path());
    // A prefix with more words than the bound: 600 words starting with "zq".
    let many: Vec<String> = (0..600).map(|i| format!("zq{i:03}x")).collect();
    let many = json!([{
        "bot_id": "multi", "user_id": "u-many", "channel": "web", "role": "user",
        "text": many.join(" "), "timestamp": recent(),
    }]);
    ingest(&server, &many);
    server.wait_indexed();
    for (q, says) in [
        ("intent:", "needs a value"),
        ("foo:bar", "unknown field `foo:`"),
        ("r*", "at least 2 characters"),
        ("refund~3", "1 to 2 edits"),
        ("\"refu* now\"", "not inside quotes"),
        ("退款~", "CJK"),
        ("zq*", "more than 500 different words"),
    ] {
        for endpoint in ["messages", "conversations"] {
            let reply = server.get(&format!("/v1/bots/multi/{endpoint}?q={}", encode(q)));
            assert_eq!(reply.status, 400, "{endpoint} {q}: {}", reply.body);
            assert!(reply.body.contains(says), "{endpoint} {q}: {}", reply.body);
        }
    }
    // The unknown-prefix error lists the known ones.
    let reply = server.get("/v1/bots/multi/messages?q=foo%3Abar");
    for known in ["user:", "bot:", "agent:", "intent:", "node:", "flow:"] {
        assert!(reply.body.contains(known), "{}", reply.body);
    }
    // A narrower prefix of the same words is fine.
    assert_eq!(found(&server, "multi", "zq00*").len(), 1);
    let page = server.get_ok("/v1/bots/multi/messages?from=now-1d&q=zq00*");
    assert_eq!(page["total"], 1, "{page}");
}

#[test]
fn relative_times_are_taken_from_now_and_bad_units_are_a_400_naming_the_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let now = chrono::Utc::now();
    let at = |ago: chrono::Duration| (now - ago).to_rfc3339();
    let messages = json!([
        {"id": "m20m", "bot_id": "b", "user_id": "u1", "channel": "web", "role": "user",
         "text": "twenty minutes ago", "timestamp": at(chrono::Duration::minutes(20))},
        {"id": "m3h", "bot_id": "b", "user_id": "u2", "channel": "web", "role": "user",
         "text": "three hours ago", "timestamp": at(chrono::Duration::hours(3))},
        {"id": "m3d", "bot_id": "b", "user_id": "u3", "channel": "web", "role": "user",
         "text": "three days ago", "timestamp": at(chrono::Duration::days(3))},
        {"id": "m10d", "bot_id": "b", "user_id": "u4", "channel": "web", "role": "user",
         "text": "ten days ago", "timestamp": at(chrono::Duration::days(10))},
        {"id": "m20d", "bot_id": "b", "user_id": "u5", "channel": "web", "role": "user",
         "text": "twenty days ago", "timestamp": at(chrono::Duration::days(20))},
    ]);
    ingest(&server, &messages);
    server.wait_indexed();
    let ids = |range: &str| -> BTreeSet<String> {
        let page = server.get_ok(&format!("/v1/bots/b/messages?limit=100&{range}"));
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    let set = |ids: &[&str]| -> BTreeSet<String> { ids.iter().map(|s| s.to_string()).collect() };
    assert_eq!(ids("from=now-1h"), set(&["m20m"]));
    assert_eq!(ids("from=now-15m"), set(&[]));
    assert_eq!(ids("from=now-24h"), set(&["m20m", "m3h"]));
    assert_eq!(ids("from=now-7d"), set(&["m20m", "m3h", "m3d"]));
    assert_eq!(ids("from=now-2w"), set(&["m20m", "m3h", "m3d", "m10d"]));
    assert_eq!(ids("from=now-30d&to=now-7d"), set(&["m10d", "m20d"]));
    assert_eq!(ids("from=now-3600s&to=now"), set(&["m20m"]));
    // Conversation search and the aggregate lists take them too.
    let page = server.get_ok("/v1/bots/b/conversations?from=now-7d");
    assert_eq!(page["total"], 3, "{page}");
    assert_eq!(server.get("/v1/bots/b/tags?from=now-2w&to=now").status, 200);
    for (param, value, says) in [
        ("from", "now-7y", "unit \\\"y\\\""),
        ("to", "now-", "needs a number"),
        ("from", "now+1d", "now-<n><unit>"),
        ("to", "yesterday", "RFC 3339"),
    ] {
        for endpoint in ["messages", "conversations", "tags"] {
            let reply = server.get(&format!("/v1/bots/b/{endpoint}?{param}={}", encode(value)));
            assert_eq!(
                reply.status, 400,
                "{endpoint} {param}={value}: {}",
                reply.body
            );
            assert!(
                reply.body.contains(param),
                "{endpoint} {param}={value}: {}",
                reply.body
            );
            assert!(
                reply.body.contains(says),
                "{endpoint} {param}={value}: {}",
                reply.body
            );
        }
    }
    // Admin endpoints that take times: the audit log and restore.
    assert_eq!(server.get("/v1/admin/audit?from=now-1d&to=now").status, 200);
    let reply = server.get("/v1/admin/audit?from=now-7y");
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("from"), "{}", reply.body);
    let reply = server.post(
        "/v1/admin/restore",
        "application/json",
        br#"{"bot_id": "b", "from": "now-30d", "to": "now-7x"}"#,
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        reply.body.contains("`to`") && reply.body.contains("unit \\\"x\\\""),
        "{}",
        reply.body
    );
    // The bulk endpoint counts with relative times too (a dry run changes nothing).
    let reply = server.post(
        "/v1/bots/b/conversations/bulk?from=now-7d",
        "application/json",
        br#"{"flag": true, "dry_run": true}"#,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["matched"], 3, "{}", reply.body);
    let reply = server.post(
        "/v1/bots/b/conversations/bulk?from=now-7q",
        "application/json",
        br#"{"flag": true, "dry_run": true}"#,
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("from"), "{}", reply.body);
}

#[test]
fn a_bots_default_language_analyses_its_messages_without_lang() {
    // One-word messages can't be language-detected: the bot's default decides.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--set",
            "search.bots.kunde.default_language=de",
            "--set",
            "search.bots.kunde.detect_language=off",
        ],
    );
    for bot in ["kunde", "other"] {
        let messages: Vec<Value> = ["Bestellungen", "Rechnungen"]
            .iter()
            .enumerate()
            .map(|(i, text)| {
                json!({"id": format!("{bot}{i}"), "bot_id": bot, "user_id": format!("u{i}"),
                       "channel": "web", "role": "user", "text": text, "timestamp": recent()})
            })
            .collect();
        ingest(&server, &Value::Array(messages));
    }
    server.wait_indexed();
    let set = |ids: &[&str]| -> BTreeSet<String> { ids.iter().map(|s| s.to_string()).collect() };
    // German stemming for the German bot: the singular finds the plural.
    assert_eq!(found(&server, "kunde", "Bestellung"), set(&["kunde0"]));
    assert_eq!(found(&server, "kunde", "rechnung"), set(&["kunde1"]));
    // The other bot's messages are English by default: no German stemming.
    assert_eq!(found(&server, "other", "Bestellung"), set(&[]));
    assert_eq!(found(&server, "other", "Bestellungen"), set(&["other0"]));
    // A bad `lang` is refused naming the field.
    let bad = json!([{"bot_id": "b", "user_id": "u", "channel": "web", "role": "user",
                      "text": "x", "timestamp": recent(), "lang": "english"}]);
    let reply = server.post(
        "/v1/messages",
        "application/json",
        &serde_json::to_vec(&bad).unwrap(),
    );
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("lang"), "{}", reply.body);
}
