//! The texts of the realistic style ([`super::TextStyle::Realistic`]): what a
//! support bot's users write and what it answers, in the five languages the
//! demo bot serves (English, German, French, Spanish, Brazilian Portuguese).
//!
//! A conversation is in its user's language (their country's; Italian and
//! Dutch users write English, which the bot also serves). Each language has
//! the ways users start the flows it serves, their answers to each question,
//! the bot's side, and `misses`: what users ask that the bot has no flow for,
//! as families of paraphrases, most frequent first — the inputs "What the bot
//! misses" clusters.

use super::{
    ACK_LEADS, AGENT_OPENERS, AGENT_PHASE_LEADS, AGENT_REQUEST_LEADS, AGENT_TEXTS, Ask,
    BOT_CLOSINGS, BOT_FALLBACKS, BOT_GREETINGS, BOT_HANDOFFS, CLOSING_LEADS, COMPLETION_SUFFIXES,
    GREETING_LEADS, HANDOFF_SYSTEM_TEXT, NAMED_FLOWS, NodeKind, Rng, answer_leads, bot_texts,
    prompt_texts,
};

/// Everything said in one language.
pub(super) struct Lang {
    /// BCP 47 primary tag, sent as each message's `lang`.
    pub code: &'static str,
    /// The flows served in this language, most used first: (flow name, how users start it).
    pub flows: fn() -> Vec<(&'static str, &'static [&'static str])>,
    pub greetings: &'static [&'static str],
    pub closings: &'static [&'static str],
    pub acks: &'static [&'static str],
    pub agent_requests: &'static [&'static str],
    pub agent_phase: &'static [&'static str],
    pub answers: fn(Ask) -> &'static [&'static str],
    pub prompts: fn(Ask) -> &'static [&'static str],
    pub bot: fn(NodeKind) -> &'static [&'static str],
    pub bot_greetings: &'static [&'static str],
    pub bot_fallbacks: &'static [&'static str],
    pub bot_closings: &'static [&'static str],
    pub completion_suffixes: &'static [&'static str],
    pub bot_handoffs: &'static [&'static str],
    pub handoff_system: &'static str,
    pub agent_openers: &'static [&'static str],
    pub agent_texts: &'static [&'static str],
    /// Needs the bot has no flow for, each a family of paraphrases, most frequent first.
    pub misses: &'static [&'static [&'static str]],
}

/// The language of a user from the country `locale` (e.g. `de-DE`).
pub(super) fn lang_of(locale: &str) -> &'static Lang {
    match locale.split('-').next() {
        Some("de") => &DE,
        Some("fr") => &FR,
        Some("es") => &ES,
        Some("pt") => &PT,
        _ => &EN,
    }
}

/// Picks a need the bot doesn't serve: family `k` with weight 1 / (k + 1),
/// then one of its paraphrases.
pub(super) fn pick_miss(lang: &Lang, rng: &mut Rng) -> &'static str {
    let total: f64 = (1..=lang.misses.len()).map(|k| 1.0 / k as f64).sum();
    let mut u = rng.f64() * total;
    for (k, family) in lang.misses.iter().enumerate() {
        u -= 1.0 / (k + 1) as f64;
        if u <= 0.0 {
            return rng.pick_str(family);
        }
    }
    rng.pick_str(lang.misses[lang.misses.len() - 1])
}

/// Picks one of the flows `lang` serves, the most used ones more often (Zipf, s = 1).
pub(super) fn pick_flow(lang: &Lang, rng: &mut Rng) -> (&'static str, &'static [&'static str]) {
    let flows = (lang.flows)();
    let total: f64 = (1..=flows.len()).map(|k| 1.0 / k as f64).sum();
    let mut u = rng.f64() * total;
    for (k, flow) in flows.iter().enumerate() {
        u -= 1.0 / (k + 1) as f64;
        if u <= 0.0 {
            return *flow;
        }
    }
    flows[flows.len() - 1]
}

/// What people do to a message as they type it: lower or upper case first, a
/// typo in a longer word; and to a `request` (asking for something), a
/// question mark or not, a "pls".
pub(super) fn as_typed(text: &mut String, rng: &mut Rng, request: bool) {
    if rng.chance(if request { 0.12 } else { 0.06 }) {
        typo(text, rng);
    }
    if rng.chance(0.35)
        && let Some(first) = text.chars().next()
        && first.is_lowercase()
    {
        let upper: String = first.to_uppercase().collect();
        text.replace_range(..first.len_utf8(), &upper);
    }
    if request {
        match rng.below(20) {
            0..=4 => text.push('?'),
            5 => text.push('!'),
            6 => text.push_str(" pls"),
            _ => {}
        }
    } else if rng.chance(0.05) {
        text.push('!');
    }
}

/// One typo in a word of four letters or more: two letters swapped, one
/// dropped or one doubled.
fn typo(text: &mut String, rng: &mut Rng) {
    let words: Vec<(usize, usize)> = text
        .split(' ')
        .scan(0, |at, word| {
            let start = *at;
            *at += word.len() + 1;
            Some((start, word.len()))
        })
        .filter(|&(start, len)| {
            len >= 4
                && text[start..start + len]
                    .chars()
                    .all(|c| c.is_ascii_lowercase())
        })
        .collect();
    if words.is_empty() {
        return;
    }
    let (start, len) = *rng.pick(&words);
    let at = start + 1 + rng.below(len - 2);
    let bytes = text.as_bytes();
    let (a, b) = (bytes[at] as char, bytes[at + 1] as char);
    match rng.below(3) {
        0 => text.replace_range(at..at + 2, &format!("{b}{a}")),
        1 => text.replace_range(at..at + 1, ""),
        _ => text.insert(at, a),
    }
}

fn en_flows() -> Vec<(&'static str, &'static [&'static str])> {
    NAMED_FLOWS
        .iter()
        .map(|(name, _, leads, _)| (*name, *leads))
        .collect()
}

#[rustfmt::skip]
pub(super) static EN: Lang = Lang {
    code: "en",
    flows: en_flows,
    greetings: GREETING_LEADS,
    closings: CLOSING_LEADS,
    acks: ACK_LEADS,
    agent_requests: AGENT_REQUEST_LEADS,
    agent_phase: AGENT_PHASE_LEADS,
    answers: answer_leads,
    prompts: prompt_texts,
    bot: bot_texts,
    bot_greetings: BOT_GREETINGS,
    bot_fallbacks: BOT_FALLBACKS,
    bot_closings: BOT_CLOSINGS,
    completion_suffixes: COMPLETION_SUFFIXES,
    bot_handoffs: BOT_HANDOFFS,
    handoff_system: HANDOFF_SYSTEM_TEXT,
    agent_openers: AGENT_OPENERS,
    agent_texts: AGENT_TEXTS,
    misses: &[
        &["do you ship to canada", "can you deliver to canada", "is shipping to canada possible", "do u ship to canada", "shipping to canada"],
        &["can i pay with paypal", "do you accept paypal", "is paypal an option", "pay by paypal", "paypal accepted"],
        &["my discount code does not work", "the coupon code is not working", "promo code says invalid", "coupon not accepted at checkout"],
        &["is there a student discount", "do you have student discounts", "discount for students", "any student deals"],
        &["can you gift wrap my order", "do you offer gift wrapping", "gift wrap possible", "can it be wrapped as a present"],
        &["i need an invoice with my company name", "can i get a vat invoice", "invoice with our vat number please"],
        &["do you price match", "will you match a cheaper price", "price match guarantee"],
        &["what size should i order", "does it run small", "where is the size guide"],
        &["are you hiring", "any job openings", "how do i apply for a job"],
        &["can i pay with bitcoin", "do you take crypto"],
        &["does the app have dark mode", "how do i turn on dark mode"],
        &["can i pick up in store", "click and collect available"],
    ],
};

fn de_flows() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        (
            "password-reset",
            &[
                "ich habe mein passwort vergessen",
                "wie setze ich mein passwort zurück",
                "ich komme nicht in mein konto",
            ],
        ),
        (
            "order-status",
            &[
                "wo ist meine bestellung",
                "wie ist der status meiner bestellung",
                "meine bestellung ist noch nicht da",
            ],
        ),
        (
            "refund-request",
            &[
                "ich möchte mein geld zurück",
                "ich möchte eine rückerstattung",
            ],
        ),
        (
            "cancel-order",
            &[
                "ich möchte meine bestellung stornieren",
                "bitte bestellung stornieren",
            ],
        ),
        (
            "delivery-tracking",
            &[
                "wann kommt mein paket",
                "sendungsverfolgung bitte",
                "mein paket ist verspätet",
            ],
        ),
        (
            "change-address",
            &[
                "ich muss meine lieferadresse ändern",
                "falsche adresse in meiner bestellung",
            ],
        ),
        (
            "update-phone",
            &["ich habe eine neue handynummer", "telefonnummer ändern"],
        ),
        (
            "open-account",
            &[
                "ich möchte ein konto eröffnen",
                "wie kann ich mich registrieren",
            ],
        ),
    ]
}

fn de_answers(ask: Ask) -> &'static [&'static str] {
    match ask {
        Ask::Email => &["meine email ist {email}", "{email}", "klar, {email}"],
        Ask::Phone => &["meine nummer ist {phone}", "{phone}"],
        Ask::OrderId => &[
            "die bestellnummer ist {order}",
            "{order}",
            "ich glaube {order}",
        ],
        Ask::Code => &["der code ist {code}", "{code}"],
        Ask::Confirm => &[
            "ja bitte",
            "ja, das stimmt",
            "ok, mach das",
            "nein warte",
            "ja",
        ],
        Ask::Name => &["ich heiße {name}", "{name}"],
        Ask::Date => &[
            "nächsten montag bitte",
            "morgen früh",
            "freitag um {hour} uhr",
        ],
        Ask::Address => &["{street} {num}, {zip} {city}"],
        Ask::Zip => &["{zip}", "meine postleitzahl ist {zip}"],
        Ask::Reason => &[
            "es kam beschädigt an",
            "falsche größe",
            "es ist nie angekommen",
            "zu teuer",
        ],
        Ask::Generic => &["also", "es geht um", "das problem ist"],
    }
}

fn de_prompts(ask: Ask) -> &'static [&'static str] {
    match ask {
        Ask::Email => &[
            "Wie lautet Ihre E-Mail-Adresse?",
            "Mit welcher E-Mail-Adresse sind Sie registriert?",
        ],
        Ask::Phone => &["Wie lautet Ihre Telefonnummer?"],
        Ask::OrderId => &[
            "Wie lautet Ihre Bestellnummer? Sie beginnt mit ORD.",
            "Können Sie mir die Bestellnummer nennen?",
        ],
        Ask::Code => &["Bitte geben Sie den 6-stelligen Code ein, den wir Ihnen geschickt haben."],
        Ask::Confirm => &[
            "Soll ich das so machen?",
            "Ist das korrekt?",
            "Kann ich sonst noch helfen?",
        ],
        Ask::Name => &["Wie ist Ihr vollständiger Name?"],
        Ask::Date => &[
            "Welcher Tag passt Ihnen?",
            "Welche Uhrzeit passt Ihnen am besten?",
        ],
        Ask::Address => &["Wie lautet die neue Lieferadresse?"],
        Ask::Zip => &["Wie lautet Ihre Postleitzahl?"],
        Ask::Reason => &["Darf ich nach dem Grund fragen?"],
        Ask::Generic => &[
            "Können Sie das etwas genauer beschreiben?",
            "Was genau möchten Sie wissen?",
        ],
    }
}

fn de_bot(kind: NodeKind) -> &'static [&'static str] {
    match kind {
        NodeKind::Prompt => de_prompts(Ask::Generic),
        NodeKind::Message => &[
            "Gerne helfe ich Ihnen dabei.",
            "Danke, habe ich notiert.",
            "Ihre Bestellung {order} ist unterwegs und kommt in {days} Tagen an.",
            "Das habe ich für Sie gefunden.",
        ],
        NodeKind::Action => &[
            "Einen Moment, ich schaue nach.",
            "Erledigt! Ich habe Ihre Daten aktualisiert.",
            "Ich habe eine Bestätigung an {email} geschickt.",
            "Ich habe das Ticket {ticket} für Sie angelegt.",
        ],
        NodeKind::Condition => &[
            "Ich prüfe das kurz für Sie.",
            "Ich prüfe, ob Sie berechtigt sind.",
        ],
    }
}

#[rustfmt::skip]
static DE: Lang = Lang {
    code: "de",
    flows: de_flows,
    greetings: &["hallo", "hi", "guten tag", "hallo, ich brauche hilfe"],
    closings: &["danke", "vielen dank", "super, danke für die hilfe"],
    acks: &["ok", "okay danke", "alles klar", "und jetzt?"],
    agent_requests: &["kann ich mit einem menschen sprechen", "ich möchte mit einem mitarbeiter sprechen", "mitarbeiter bitte"],
    agent_phase: &["ok", "ja", "danke", "es geht immer noch nicht", "die bestellnummer ist {order}"],
    answers: de_answers,
    prompts: de_prompts,
    bot: de_bot,
    bot_greetings: &["Hallo! Wie kann ich Ihnen helfen?", "Hallo, ich bin der virtuelle Assistent. Was kann ich für Sie tun?"],
    bot_fallbacks: &["Entschuldigung, das habe ich nicht verstanden.", "Das habe ich leider nicht verstanden. Können Sie es anders formulieren?", "Ich kann leider nur bei Bestellungen, Konten und Lieferungen helfen."],
    bot_closings: &["Gern geschehen! Einen schönen Tag noch.", "Gerne. Auf Wiedersehen!"],
    completion_suffixes: &[" Fertig!", " Kann ich sonst noch helfen?", ""],
    bot_handoffs: &["Ich verbinde Sie mit einem Kollegen, einen Moment bitte."],
    handoff_system: "Gespräch an einen Mitarbeiter übergeben",
    agent_openers: &["Hallo, hier ist {agent} vom Kundenservice. Wie kann ich helfen?"],
    agent_texts: &["Danke, ich schaue mir das an.", "Ich habe das bei uns behoben, versuchen Sie es bitte noch einmal.", "Verstehe, entschuldigen Sie die Umstände."],
    misses: &[
        &["liefert ihr auch in die schweiz", "versand in die schweiz möglich", "kann man in die schweiz bestellen"],
        &["kann ich mit paypal bezahlen", "geht paypal", "nehmt ihr paypal"],
        &["mein gutscheincode funktioniert nicht", "der rabattcode geht nicht", "gutschein wird nicht akzeptiert"],
        &["kann ich auf rechnung kaufen", "geht kauf auf rechnung"],
        &["gibt es einen studentenrabatt", "rabatt für studenten"],
    ],
};

fn fr_flows() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        (
            "password-reset",
            &[
                "j'ai oublié mon mot de passe",
                "comment réinitialiser mon mot de passe",
                "je n'arrive pas à me connecter",
            ],
        ),
        (
            "order-status",
            &[
                "où est ma commande",
                "quel est le statut de ma commande",
                "ma commande n'est pas arrivée",
            ],
        ),
        (
            "refund-request",
            &["je veux être remboursé", "je voudrais un remboursement"],
        ),
        (
            "cancel-order",
            &["je veux annuler ma commande", "annuler ma commande svp"],
        ),
        (
            "delivery-tracking",
            &[
                "quand arrive mon colis",
                "suivi de livraison",
                "mon colis est en retard",
            ],
        ),
        (
            "change-address",
            &[
                "je dois changer mon adresse de livraison",
                "mauvaise adresse sur ma commande",
            ],
        ),
        (
            "update-phone",
            &["j'ai un nouveau numéro", "changer mon numéro de téléphone"],
        ),
        (
            "open-account",
            &["je veux créer un compte", "comment je m'inscris"],
        ),
    ]
}

fn fr_answers(ask: Ask) -> &'static [&'static str] {
    match ask {
        Ask::Email => &["mon email est {email}", "{email}", "c'est {email}"],
        Ask::Phone => &["mon numéro est {phone}", "{phone}"],
        Ask::OrderId => &[
            "le numéro de commande est {order}",
            "{order}",
            "je crois que c'est {order}",
        ],
        Ask::Code => &["le code est {code}", "{code}"],
        Ask::Confirm => &[
            "oui s'il vous plaît",
            "oui c'est correct",
            "ok allez-y",
            "non attendez",
            "oui",
        ],
        Ask::Name => &["je m'appelle {name}", "{name}"],
        Ask::Date => &["lundi prochain", "demain matin", "vendredi à {hour}h"],
        Ask::Address => &["{num} {street}, {zip} {city}"],
        Ask::Zip => &["{zip}", "mon code postal est {zip}"],
        Ask::Reason => &[
            "il est arrivé abîmé",
            "mauvaise taille",
            "jamais reçu",
            "trop cher",
        ],
        Ask::Generic => &["alors", "c'est à propos de", "le problème c'est"],
    }
}

fn fr_prompts(ask: Ask) -> &'static [&'static str] {
    match ask {
        Ask::Email => &[
            "Quelle est votre adresse e-mail ?",
            "Avec quelle adresse e-mail êtes-vous inscrit ?",
        ],
        Ask::Phone => &["Quel est votre numéro de téléphone ?"],
        Ask::OrderId => &["Quel est votre numéro de commande ? Il commence par ORD."],
        Ask::Code => &["Veuillez saisir le code à 6 chiffres que nous venons de vous envoyer."],
        Ask::Confirm => &[
            "Je continue ?",
            "Est-ce correct ?",
            "Puis-je vous aider pour autre chose ?",
        ],
        Ask::Name => &["Quel est votre nom complet ?"],
        Ask::Date => &[
            "Quel jour vous conviendrait ?",
            "Quelle heure vous arrange ?",
        ],
        Ask::Address => &["Quelle est la nouvelle adresse de livraison ?"],
        Ask::Zip => &["Quel est votre code postal ?"],
        Ask::Reason => &["Puis-je vous demander la raison ?"],
        Ask::Generic => &[
            "Pouvez-vous m'en dire un peu plus ?",
            "Que souhaitez-vous savoir exactement ?",
        ],
    }
}

fn fr_bot(kind: NodeKind) -> &'static [&'static str] {
    match kind {
        NodeKind::Prompt => fr_prompts(Ask::Generic),
        NodeKind::Message => &[
            "Bien sûr, je peux vous aider.",
            "Merci, c'est noté.",
            "Votre commande {order} est en route et arrivera dans {days} jours.",
            "Voici ce que j'ai trouvé.",
        ],
        NodeKind::Action => &[
            "Un instant, je vérifie.",
            "C'est fait ! J'ai mis à jour vos informations.",
            "J'ai envoyé une confirmation à {email}.",
            "J'ai créé le ticket {ticket} pour vous.",
        ],
        NodeKind::Condition => &["Je vérifie pour vous.", "Je vérifie si vous y avez droit."],
    }
}

#[rustfmt::skip]
static FR: Lang = Lang {
    code: "fr",
    flows: fr_flows,
    greetings: &["bonjour", "salut", "bonjour, j'ai besoin d'aide"],
    closings: &["merci", "merci beaucoup", "super, merci pour votre aide"],
    acks: &["ok", "d'accord merci", "très bien", "et maintenant ?"],
    agent_requests: &["je veux parler à un humain", "je voudrais parler à un conseiller", "conseiller svp"],
    agent_phase: &["ok", "oui", "merci", "ça ne marche toujours pas", "le numéro de commande est {order}"],
    answers: fr_answers,
    prompts: fr_prompts,
    bot: fr_bot,
    bot_greetings: &["Bonjour ! Comment puis-je vous aider ?", "Bonjour, je suis l'assistant virtuel. Que puis-je faire pour vous ?"],
    bot_fallbacks: &["Désolé, je n'ai pas compris.", "Je n'ai pas bien compris. Pouvez-vous reformuler ?", "Désolé, je ne peux aider que pour les commandes, les comptes et les livraisons."],
    bot_closings: &["Avec plaisir ! Bonne journée.", "Ravi d'avoir pu aider. Au revoir !"],
    completion_suffixes: &[" C'est fait !", " Puis-je vous aider pour autre chose ?", ""],
    bot_handoffs: &["Je vous mets en relation avec un conseiller, un instant s'il vous plaît."],
    handoff_system: "Conversation transférée à un conseiller",
    agent_openers: &["Bonjour, ici {agent} du service client. Comment puis-je vous aider ?"],
    agent_texts: &["Merci, je regarde ça.", "J'ai corrigé le problème de notre côté, pouvez-vous réessayer ?", "Je comprends, désolé pour le désagrément."],
    misses: &[
        &["vous livrez en belgique", "livraison en belgique possible", "est-ce que vous expédiez en belgique"],
        &["je peux payer avec paypal", "vous acceptez paypal", "paiement paypal possible"],
        &["mon code promo ne marche pas", "le code de réduction ne fonctionne pas", "code promo invalide"],
        &["vous faites des emballages cadeaux", "emballage cadeau possible"],
        &["il y a une réduction étudiant", "réduction pour les étudiants"],
    ],
};

fn es_flows() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        (
            "password-reset",
            &[
                "olvidé mi contraseña",
                "cómo restablezco mi contraseña",
                "no puedo entrar en mi cuenta",
            ],
        ),
        (
            "order-status",
            &[
                "dónde está mi pedido",
                "cuál es el estado de mi pedido",
                "mi pedido no ha llegado",
            ],
        ),
        (
            "refund-request",
            &["quiero un reembolso", "quiero que me devuelvan el dinero"],
        ),
        (
            "cancel-order",
            &["quiero cancelar mi pedido", "cancelad mi pedido por favor"],
        ),
        (
            "delivery-tracking",
            &[
                "cuándo llega mi paquete",
                "seguimiento del envío",
                "mi paquete llega tarde",
            ],
        ),
        (
            "change-address",
            &[
                "necesito cambiar la dirección de entrega",
                "la dirección del pedido está mal",
            ],
        ),
        (
            "update-phone",
            &[
                "tengo un número de teléfono nuevo",
                "cambiar mi número de teléfono",
            ],
        ),
        (
            "open-account",
            &["quiero abrir una cuenta", "cómo me registro"],
        ),
    ]
}

fn es_answers(ask: Ask) -> &'static [&'static str] {
    match ask {
        Ask::Email => &["mi correo es {email}", "{email}", "es {email}"],
        Ask::Phone => &["mi número es {phone}", "{phone}"],
        Ask::OrderId => &[
            "el número de pedido es {order}",
            "{order}",
            "creo que es {order}",
        ],
        Ask::Code => &["el código es {code}", "{code}"],
        Ask::Confirm => &[
            "sí por favor",
            "sí, es correcto",
            "vale, adelante",
            "no, espera",
            "sí",
        ],
        Ask::Name => &["me llamo {name}", "{name}"],
        Ask::Date => &[
            "el lunes que viene",
            "mañana por la mañana",
            "el viernes a las {hour}",
        ],
        Ask::Address => &["{street} {num}, {zip} {city}"],
        Ask::Zip => &["{zip}", "mi código postal es {zip}"],
        Ask::Reason => &[
            "llegó dañado",
            "la talla no es",
            "nunca llegó",
            "demasiado caro",
        ],
        Ask::Generic => &["bueno", "es sobre", "el problema es que"],
    }
}

fn es_prompts(ask: Ask) -> &'static [&'static str] {
    match ask {
        Ask::Email => &[
            "¿Cuál es tu correo electrónico?",
            "¿Con qué correo te registraste?",
        ],
        Ask::Phone => &["¿Cuál es tu número de teléfono?"],
        Ask::OrderId => &["¿Cuál es tu número de pedido? Empieza por ORD."],
        Ask::Code => &["Introduce el código de 6 cifras que te acabamos de enviar."],
        Ask::Confirm => &[
            "¿Lo hago así?",
            "¿Es correcto?",
            "¿Puedo ayudarte en algo más?",
        ],
        Ask::Name => &["¿Cuál es tu nombre completo?"],
        Ask::Date => &["¿Qué día te viene bien?", "¿A qué hora te va mejor?"],
        Ask::Address => &["¿Cuál es la nueva dirección de entrega?"],
        Ask::Zip => &["¿Cuál es tu código postal?"],
        Ask::Reason => &["¿Puedo preguntarte el motivo?"],
        Ask::Generic => &[
            "¿Puedes contarme un poco más?",
            "¿Qué quieres saber exactamente?",
        ],
    }
}

fn es_bot(kind: NodeKind) -> &'static [&'static str] {
    match kind {
        NodeKind::Prompt => es_prompts(Ask::Generic),
        NodeKind::Message => &[
            "Claro, te ayudo con eso.",
            "Gracias, lo he anotado.",
            "Tu pedido {order} está en camino y llegará en {days} días.",
            "Esto es lo que he encontrado.",
        ],
        NodeKind::Action => &[
            "Un momento, lo estoy mirando.",
            "¡Hecho! He actualizado tus datos.",
            "He enviado una confirmación a {email}.",
            "He creado el ticket {ticket} para ti.",
        ],
        NodeKind::Condition => &[
            "Déjame comprobarlo.",
            "Compruebo si cumples los requisitos.",
        ],
    }
}

#[rustfmt::skip]
static ES: Lang = Lang {
    code: "es",
    flows: es_flows,
    greetings: &["hola", "buenas", "hola, necesito ayuda"],
    closings: &["gracias", "muchas gracias", "genial, gracias por la ayuda"],
    acks: &["vale", "ok gracias", "perfecto", "¿y ahora?"],
    agent_requests: &["quiero hablar con una persona", "puedo hablar con un agente", "agente por favor"],
    agent_phase: &["vale", "sí", "gracias", "sigue sin funcionar", "el número de pedido es {order}"],
    answers: es_answers,
    prompts: es_prompts,
    bot: es_bot,
    bot_greetings: &["¡Hola! ¿En qué puedo ayudarte?", "Hola, soy el asistente virtual. ¿Qué puedo hacer por ti?"],
    bot_fallbacks: &["Lo siento, no te he entendido.", "No lo he entendido bien. ¿Puedes decirlo de otra forma?", "Lo siento, solo puedo ayudarte con pedidos, cuentas y envíos."],
    bot_closings: &["¡De nada! Que tengas un buen día.", "Encantado de ayudar. ¡Adiós!"],
    completion_suffixes: &[" ¡Listo!", " ¿Puedo ayudarte en algo más?", ""],
    bot_handoffs: &["Te paso con un compañero, un momento por favor."],
    handoff_system: "Conversación transferida a un agente",
    agent_openers: &["Hola, soy {agent} de atención al cliente. ¿En qué puedo ayudarte?"],
    agent_texts: &["Gracias, lo reviso.", "Lo he arreglado por nuestra parte, ¿puedes probar otra vez?", "Entiendo, perdona las molestias."],
    misses: &[
        &["hacéis envíos a canarias", "enviáis a canarias", "se puede enviar a canarias"],
        &["puedo pagar con bizum", "aceptáis bizum", "pago con bizum"],
        &["mi código de descuento no funciona", "el cupón no va", "código promocional no válido"],
        &["tenéis descuento para estudiantes", "descuento de estudiante"],
    ],
};

fn pt_flows() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        (
            "password-reset",
            &[
                "esqueci minha senha",
                "como redefinir minha senha",
                "não consigo entrar na minha conta",
            ],
        ),
        (
            "order-status",
            &[
                "cadê meu pedido",
                "qual o status do meu pedido",
                "meu pedido ainda não chegou",
            ],
        ),
        (
            "refund-request",
            &["quero meu dinheiro de volta", "quero um reembolso"],
        ),
        (
            "cancel-order",
            &["quero cancelar meu pedido", "cancela meu pedido por favor"],
        ),
        (
            "delivery-tracking",
            &[
                "quando chega minha encomenda",
                "rastrear minha entrega",
                "minha encomenda está atrasada",
            ],
        ),
        (
            "change-address",
            &[
                "preciso mudar o endereço de entrega",
                "endereço errado no pedido",
            ],
        ),
    ]
}

fn pt_answers(ask: Ask) -> &'static [&'static str] {
    match ask {
        Ask::Email => &["meu email é {email}", "{email}"],
        Ask::Phone => &["meu número é {phone}", "{phone}"],
        Ask::OrderId => &[
            "o número do pedido é {order}",
            "{order}",
            "acho que é {order}",
        ],
        Ask::Code => &["o código é {code}", "{code}"],
        Ask::Confirm => &[
            "sim por favor",
            "sim, está certo",
            "ok pode fazer",
            "não, espera",
            "sim",
        ],
        Ask::Name => &["meu nome é {name}", "{name}"],
        Ask::Date => &["segunda que vem", "amanhã de manhã", "sexta às {hour}"],
        Ask::Address => &["{street} {num}, {zip} {city}"],
        Ask::Zip => &["{zip}", "meu cep é {zip}"],
        Ask::Reason => &[
            "chegou quebrado",
            "tamanho errado",
            "nunca chegou",
            "muito caro",
        ],
        Ask::Generic => &["então", "é sobre", "o problema é que"],
    }
}

fn pt_prompts(ask: Ask) -> &'static [&'static str] {
    match ask {
        Ask::Email => &["Qual é o seu e-mail?", "Com qual e-mail você se cadastrou?"],
        Ask::Phone => &["Qual é o seu número de telefone?"],
        Ask::OrderId => &["Qual é o número do pedido? Ele começa com ORD."],
        Ask::Code => &["Digite o código de 6 dígitos que acabamos de enviar."],
        Ask::Confirm => &[
            "Posso continuar?",
            "Está correto?",
            "Posso ajudar em mais alguma coisa?",
        ],
        Ask::Name => &["Qual é o seu nome completo?"],
        Ask::Date => &["Qual dia fica bom para você?", "Qual horário é melhor?"],
        Ask::Address => &["Qual é o novo endereço de entrega?"],
        Ask::Zip => &["Qual é o seu CEP?"],
        Ask::Reason => &["Posso perguntar o motivo?"],
        Ask::Generic => &[
            "Pode me contar um pouco mais?",
            "O que exatamente você quer saber?",
        ],
    }
}

fn pt_bot(kind: NodeKind) -> &'static [&'static str] {
    match kind {
        NodeKind::Prompt => pt_prompts(Ask::Generic),
        NodeKind::Message => &[
            "Claro, posso ajudar com isso.",
            "Obrigado, anotei.",
            "Seu pedido {order} está a caminho e chega em {days} dias.",
            "Aqui está o que encontrei.",
        ],
        NodeKind::Action => &[
            "Um momento, estou verificando.",
            "Pronto! Atualizei seus dados.",
            "Enviei uma confirmação para {email}.",
            "Abri o chamado {ticket} para você.",
        ],
        NodeKind::Condition => &[
            "Vou verificar para você.",
            "Estou verificando se você tem direito.",
        ],
    }
}

#[rustfmt::skip]
static PT: Lang = Lang {
    code: "pt",
    flows: pt_flows,
    greetings: &["oi", "olá", "oi, preciso de ajuda"],
    closings: &["obrigado", "muito obrigada", "valeu pela ajuda"],
    acks: &["ok", "beleza obrigado", "certo", "e agora?"],
    agent_requests: &["quero falar com um atendente", "posso falar com uma pessoa", "atendente por favor"],
    agent_phase: &["ok", "sim", "obrigado", "continua sem funcionar", "o número do pedido é {order}"],
    answers: pt_answers,
    prompts: pt_prompts,
    bot: pt_bot,
    bot_greetings: &["Oi! Como posso ajudar?", "Olá, sou o assistente virtual. O que posso fazer por você?"],
    bot_fallbacks: &["Desculpe, não entendi.", "Não entendi bem. Pode dizer de outro jeito?", "Desculpe, só posso ajudar com pedidos, contas e entregas."],
    bot_closings: &["De nada! Tenha um ótimo dia.", "Foi um prazer ajudar. Tchau!"],
    completion_suffixes: &[" Pronto!", " Posso ajudar em mais alguma coisa?", ""],
    bot_handoffs: &["Vou transferir você para um atendente, um momento por favor."],
    handoff_system: "Conversa transferida para um atendente",
    agent_openers: &["Oi, aqui é {agent} do atendimento. Como posso ajudar?"],
    agent_texts: &["Obrigado, vou verificar.", "Corrigi do nosso lado, pode tentar de novo?", "Entendo, desculpe o transtorno."],
    misses: &[
        &["posso pagar com pix", "vocês aceitam pix", "pagamento por pix"],
        &["entregam em portugal", "vocês enviam para portugal", "frete para portugal"],
        &["meu cupom não funciona", "o cupom de desconto não vale", "código promocional inválido"],
        &["dá para parcelar", "posso parcelar em 10x", "parcelamento sem juros"],
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_serves_flows_that_exist() {
        for lang in [&EN, &DE, &FR, &ES, &PT] {
            for (name, leads) in (lang.flows)() {
                assert!(
                    NAMED_FLOWS.iter().any(|(n, ..)| *n == name),
                    "{} {name}",
                    lang.code
                );
                assert!(!leads.is_empty());
            }
            assert!(lang.misses.len() >= 4 && lang.misses.iter().all(|f| f.len() >= 2));
        }
    }

    #[test]
    fn a_typo_changes_one_longer_word_only() {
        let mut rng = Rng::new(3);
        for _ in 0..200 {
            let mut text = "where is my order ORD-12345".to_string();
            typo(&mut text, &mut rng);
            assert!(text.ends_with(" ORD-12345"), "{text}");
            assert_ne!(text, "where is my order ORD-12345");
            let changed = text
                .split(' ')
                .zip("where is my order ORD-12345".split(' '))
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(changed, 1, "{text}");
        }
    }
}
