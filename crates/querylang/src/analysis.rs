//! Text analysis, shared by the index, the query and the highlighter: how a
//! message's text becomes index tokens, and how a query word becomes the
//! tokens it can match.
//!
//! Text is cut into *pieces*: words of spaced scripts (maximal runs of letters,
//! digits and combining marks) and runs of unspaced scripts (Han, Hiragana,
//! Katakana, Hangul, Thai, Lao, Khmer, Myanmar), which have no spaces between
//! words.
//!
//! - A word is lowercased, stemmed with the Snowball stemmer of the message's
//!   language (when there is one) and folded (diacritics, ß, ı, ligatures), then
//!   tagged with the language: `refunded` in English is `en:refund`. The tag
//!   keeps one language's stems from matching another's. Its unstemmed folded
//!   form (`refunded`) is indexed too, without positions, for prefixes and typos.
//! - A run of unspaced script becomes its overlapping bigrams (`我想申请` →
//!   `我想`, `想申`, `申请`), as Elasticsearch's `cjk` analyzer does, so any
//!   substring of two or more characters is a phrase of bigrams. A run of one
//!   character is itself.
//!
//! A query word is analysed once per language present in the index (one short
//! query can't be language-detected reliably): `refunds` looks for `en:refund`,
//! `de:refund`, `es:refund`… and so matches "refund" in English messages and
//! whatever the German or Spanish stemmer makes of it in theirs.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

pub use frostem::Algorithm;

/// A language the analysis knows: its BCP 47 primary tag, the detector's
/// language and its Snowball stemmer, when one exists.
struct Known {
    tag: &'static str,
    detected: whatlang::Lang,
    stemmer: Option<Algorithm>,
}

/// Every language the detector reports, with the stemmers that exist.
const KNOWN: &[Known] = &[
    known("af", whatlang::Lang::Afr, None),
    known("am", whatlang::Lang::Amh, None),
    known("ar", whatlang::Lang::Ara, Some(Algorithm::Arabic)),
    known("az", whatlang::Lang::Aze, None),
    known("be", whatlang::Lang::Bel, None),
    known("bg", whatlang::Lang::Bul, None),
    known("bn", whatlang::Lang::Ben, None),
    known("ca", whatlang::Lang::Cat, Some(Algorithm::Catalan)),
    known("cs", whatlang::Lang::Ces, Some(Algorithm::Czech)),
    known("cy", whatlang::Lang::Cym, None),
    known("da", whatlang::Lang::Dan, Some(Algorithm::Danish)),
    known("de", whatlang::Lang::Deu, Some(Algorithm::German)),
    known("el", whatlang::Lang::Ell, Some(Algorithm::Greek)),
    known("en", whatlang::Lang::Eng, Some(Algorithm::English)),
    known("eo", whatlang::Lang::Epo, Some(Algorithm::Esperanto)),
    known("es", whatlang::Lang::Spa, Some(Algorithm::Spanish)),
    known("et", whatlang::Lang::Est, Some(Algorithm::Estonian)),
    known("fa", whatlang::Lang::Pes, Some(Algorithm::Persian)),
    known("fi", whatlang::Lang::Fin, Some(Algorithm::Finnish)),
    known("fr", whatlang::Lang::Fra, Some(Algorithm::French)),
    known("gu", whatlang::Lang::Guj, None),
    known("he", whatlang::Lang::Heb, None),
    known("hi", whatlang::Lang::Hin, Some(Algorithm::Hindi)),
    known("hr", whatlang::Lang::Hrv, None),
    known("hu", whatlang::Lang::Hun, Some(Algorithm::Hungarian)),
    known("hy", whatlang::Lang::Hye, Some(Algorithm::Armenian)),
    known("id", whatlang::Lang::Ind, Some(Algorithm::Indonesian)),
    known("it", whatlang::Lang::Ita, Some(Algorithm::Italian)),
    known("ja", whatlang::Lang::Jpn, None),
    known("jv", whatlang::Lang::Jav, None),
    known("ka", whatlang::Lang::Kat, None),
    known("km", whatlang::Lang::Khm, None),
    known("kn", whatlang::Lang::Kan, None),
    known("ko", whatlang::Lang::Kor, None),
    known("la", whatlang::Lang::Lat, None),
    known("lt", whatlang::Lang::Lit, Some(Algorithm::Lithuanian)),
    known("lv", whatlang::Lang::Lav, None),
    known("mk", whatlang::Lang::Mkd, None),
    known("ml", whatlang::Lang::Mal, None),
    known("mr", whatlang::Lang::Mar, None),
    known("my", whatlang::Lang::Mya, None),
    known("nb", whatlang::Lang::Nob, Some(Algorithm::Norwegian)),
    known("ne", whatlang::Lang::Nep, Some(Algorithm::Nepali)),
    known("nl", whatlang::Lang::Nld, Some(Algorithm::Dutch)),
    known("or", whatlang::Lang::Ori, None),
    known("pa", whatlang::Lang::Pan, None),
    known("pl", whatlang::Lang::Pol, Some(Algorithm::Polish)),
    known("pt", whatlang::Lang::Por, Some(Algorithm::Portuguese)),
    known("ro", whatlang::Lang::Ron, Some(Algorithm::Romanian)),
    known("ru", whatlang::Lang::Rus, Some(Algorithm::Russian)),
    known("si", whatlang::Lang::Sin, None),
    known("sk", whatlang::Lang::Slk, None),
    known("sl", whatlang::Lang::Slv, None),
    known("sn", whatlang::Lang::Sna, None),
    known("sr", whatlang::Lang::Srp, Some(Algorithm::Serbian)),
    known("sv", whatlang::Lang::Swe, Some(Algorithm::Swedish)),
    known("ta", whatlang::Lang::Tam, Some(Algorithm::Tamil)),
    known("te", whatlang::Lang::Tel, None),
    known("th", whatlang::Lang::Tha, None),
    known("tk", whatlang::Lang::Tuk, None),
    known("tl", whatlang::Lang::Tgl, None),
    known("tr", whatlang::Lang::Tur, Some(Algorithm::Turkish)),
    known("uk", whatlang::Lang::Ukr, None),
    known("ur", whatlang::Lang::Urd, None),
    known("uz", whatlang::Lang::Uzb, None),
    known("vi", whatlang::Lang::Vie, None),
    known("yi", whatlang::Lang::Yid, Some(Algorithm::Yiddish)),
    known("zh", whatlang::Lang::Cmn, None),
    known("zu", whatlang::Lang::Zul, None),
    known("ak", whatlang::Lang::Aka, None),
];

const fn known(tag: &'static str, detected: whatlang::Lang, stemmer: Option<Algorithm>) -> Known {
    Known {
        tag,
        detected,
        stemmer,
    }
}

/// The languages with a stemmer, by tag: what `docs/api.md` lists.
pub fn stemmed_languages() -> impl Iterator<Item = &'static str> {
    KNOWN.iter().filter(|k| k.stemmer.is_some()).map(|k| k.tag)
}

/// The primary language subtag of a BCP 47 tag, lowercased (`pt-BR` → `pt`),
/// or why it isn't one: 2 or 3 ASCII letters before any `-`.
pub fn primary_tag(tag: &str) -> Result<String, &'static str> {
    let primary = tag.split(['-', '_']).next().unwrap_or_default();
    if !(2..=3).contains(&primary.len()) || !primary.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(
            "must be a BCP 47 language tag whose primary subtag is 2 or 3 letters, e.g. `en` or `pt-BR`",
        );
    }
    Ok(primary.to_ascii_lowercase())
}

/// Scripts other than Latin, with the languages written in them, the most
/// spoken first: what a text in that script is taken to be when the detector
/// is not confident (it often can't tell Russian from Bulgarian in a short text,
/// but the script is certain).
const SCRIPTS: &[(whatlang::Script, &[&str])] = {
    use whatlang::Script::*;
    &[
        (Arabic, &["ar", "fa", "ur"]),
        (Armenian, &["hy"]),
        (Bengali, &["bn"]),
        (Cyrillic, &["ru", "uk", "be", "bg", "sr", "mk"]),
        (Devanagari, &["hi", "mr", "ne"]),
        (Ethiopic, &["am"]),
        (Georgian, &["ka"]),
        (Greek, &["el"]),
        (Gujarati, &["gu"]),
        (Gurmukhi, &["pa"]),
        (Hangul, &["ko"]),
        (Hebrew, &["he", "yi"]),
        (Hiragana, &["ja"]),
        (Kannada, &["kn"]),
        (Katakana, &["ja"]),
        (Khmer, &["km"]),
        (Malayalam, &["ml"]),
        (Mandarin, &["zh", "ja"]),
        (Myanmar, &["my"]),
        (Oriya, &["or"]),
        (Sinhala, &["si"]),
        (Tamil, &["ta"]),
        (Telugu, &["te"]),
        (Thai, &["th"]),
    ]
};

/// The detector's confidence from which its language is taken. Its own
/// "reliable" (0.9) is almost never reached by a chat message; at 0.5 a
/// sentence of Spanish or German is recognised and a line of English words
/// with typos ("hi i need some help 10 me fozibra", 0.01) is not.
const CONFIDENT: f64 = 0.5;

/// How the language of a message without `lang` is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    /// Always the default language.
    Off,
    /// From the script of the text (about a microsecond): a script other than
    /// Latin gives its most spoken language (Cyrillic: Russian) unless the
    /// default is written in it; Latin script gives the default.
    Script,
    /// The detector's language when it is confident, else as `Script`
    /// (about 70 µs a chat message: trigram statistics of ~70 languages).
    Full,
}

impl Detection {
    /// The names `search.detect_language` takes.
    pub const NAMES: [(&'static str, Detection); 3] = [
        ("off", Detection::Off),
        ("script", Detection::Script),
        ("full", Detection::Full),
    ];
}

/// The language of `text` (see [`Detection`]), `default` when nothing better
/// is known.
pub fn detect(text: &str, default: &str, detection: Detection) -> String {
    let script = match detection {
        Detection::Off => return default.to_string(),
        Detection::Script => whatlang::detect_script(text),
        Detection::Full => {
            let Some(info) = whatlang::detect(text) else {
                return default.to_string();
            };
            let known = KNOWN.iter().find(|k| k.detected == info.lang());
            if info.confidence() >= CONFIDENT
                && let Some(known) = known
            {
                return known.tag.to_string();
            }
            Some(info.script())
        }
    };
    match SCRIPTS.iter().find(|(known, _)| Some(*known) == script) {
        Some((_, langs)) if !langs.contains(&default) => langs[0].to_string(),
        _ => default.to_string(),
    }
}

fn stemmer(lang: &str) -> Option<frostem::Stemmer> {
    KNOWN
        .iter()
        .find(|k| k.tag == lang)
        .and_then(|k| k.stemmer)
        .map(frostem::Stemmer::new)
}

/// What kind of text a piece is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceKind {
    /// A word of a spaced script.
    Word,
    /// A run of an unspaced script (CJK, Thai…), indexed as bigrams.
    Run,
}

/// A piece of text: its byte range in the text and its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub start: usize,
    pub end: usize,
    pub kind: PieceKind,
}

/// Max piece length in bytes; longer pieces are dropped by the index and the query alike.
pub const MAX_PIECE_LEN: usize = 64;

/// Scripts written without spaces between words.
fn is_unspaced(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF      // Thai, Lao
        | 0x1000..=0x109F    // Myanmar
        | 0x1780..=0x17FF    // Khmer
        | 0x1100..=0x11FF    // Hangul Jamo
        | 0x2E80..=0x2FDF    // CJK radicals
        | 0x3005..=0x3007    // 々 〆 〇
        | 0x3040..=0x30FF    // Hiragana, Katakana
        | 0x3130..=0x318F    // Hangul compatibility Jamo
        | 0x31F0..=0x31FF    // Katakana extensions
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xA960..=0xA97F    // Hangul Jamo extended A
        | 0xAC00..=0xD7FF    // Hangul syllables, Jamo extended B
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0xFF66..=0xFF9F    // half-width Katakana
        | 0x20000..=0x3134F  // CJK extensions B–G
    )
}

fn kind_of(c: char) -> Option<PieceKind> {
    if is_unspaced(c) {
        Some(PieceKind::Run)
    } else if c.is_alphanumeric() || is_combining_mark(c) {
        Some(PieceKind::Word)
    } else {
        None
    }
}

/// Cuts `text` into pieces, in order. Pieces longer than [`MAX_PIECE_LEN`]
/// bytes are dropped (they are never words people search for).
pub fn pieces(text: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut current: Option<(usize, PieceKind)> = None;
    let mut push = |start: usize, end: usize, kind: PieceKind| {
        if end - start <= MAX_PIECE_LEN {
            out.push(Piece { start, end, kind });
        }
    };
    for (i, c) in text.char_indices() {
        // A combining mark belongs to the piece before it, whatever its script.
        let kind = match (kind_of(c), current) {
            (Some(PieceKind::Word), Some((_, open))) if is_combining_mark(c) => Some(open),
            (kind, _) => kind,
        };
        match (kind, current) {
            (Some(kind), Some((_, open))) if kind == open => {}
            (kind, open) => {
                if let Some((start, open)) = open {
                    push(start, i, open);
                }
                current = kind.map(|kind| (i, kind));
            }
        }
    }
    if let Some((start, kind)) = current {
        push(start, text.len(), kind);
    }
    out
}

/// Lowercases a word the way both sides agree on: NFC, then per character,
/// with `İ` as `i` (not `i` + a combining dot).
pub fn lower(word: &str) -> String {
    if word.is_ascii() {
        return word.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(word.len());
    for c in word.nfc() {
        match c {
            'İ' => out.push('i'),
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// Folds a lowercased word: diacritics of Latin, Greek and Cyrillic letters
/// and Arabic short vowels go, and a few letters become what people type
/// instead (`ß` → `ss`, `ı` → `i`, `ё` → `е`, `œ` → `oe`, `ø` → `o`…). Marks of
/// other scripts (Devanagari vowel signs…) are part of the letters and stay,
/// and so does the Cyrillic `й`, a letter of its own.
pub fn fold(lowered: &str) -> String {
    if lowered.is_ascii() {
        return lowered.to_string();
    }
    let mut out = String::with_capacity(lowered.len());
    let mut push = |c: char| match c {
        '\u{0300}'..='\u{036F}' | '\u{064B}'..='\u{065F}' | '\u{0670}' | '\u{0640}' => {}
        'ß' => out.push_str("ss"),
        'ı' => out.push('i'),
        'œ' => out.push_str("oe"),
        'æ' => out.push_str("ae"),
        'ø' => out.push('o'),
        'đ' => out.push('d'),
        'ł' => out.push('l'),
        'þ' => out.push_str("th"),
        'ς' => out.push('σ'),
        c => out.push(c),
    };
    for c in lowered.chars() {
        if c == 'й' {
            push(c);
        } else {
            unicode_normalization::char::decompose_canonical(c, &mut push);
        }
    }
    if out.is_ascii() {
        return out;
    }
    out.nfc().collect()
}

/// The analysis of words in one language: its tag and stemmer, looked up once.
#[derive(Clone, Copy)]
pub struct Analyzer<'a> {
    lang: &'a str,
    stemmer: Option<frostem::Stemmer>,
}

impl<'a> Analyzer<'a> {
    pub fn new(lang: &'a str) -> Analyzer<'a> {
        Analyzer {
            lang,
            stemmer: stemmer(lang),
        }
    }

    /// The stem of a lowercased word, folded; the word folded when the
    /// language has no stemmer. The word is folded before it is stemmed, so
    /// a word written without its accents (`cafe`, `pedido`, `iade`) has the
    /// stem of the word written with them.
    pub fn stem(&self, lowered: &str) -> String {
        let folded = fold(lowered);
        match self.stemmer {
            Some(stemmer) => fold(&stemmer.stem(&folded)),
            None => folded,
        }
    }

    /// The token of a word's stem: `lang:stem`.
    pub fn token(&self, lowered: &str) -> String {
        self.tagged(&self.stem(lowered))
    }

    /// The token of the word's stem as written (stemmed, then folded), when
    /// it differs from [`Analyzer::token`]: stemmers know their language's
    /// letters (Turkish `ı` in `-ları`), so an accurately written word also
    /// gets this one. Words of plain ASCII never differ.
    pub fn written_token(&self, lowered: &str) -> Option<String> {
        let stemmer = self.stemmer.filter(|_| !lowered.is_ascii())?;
        let written = fold(&stemmer.stem(lowered));
        (written != self.stem(lowered)).then(|| self.tagged(&written))
    }

    /// The tokens a single query word looks for: its token, and its written
    /// token when there is one.
    pub fn tokens(&self, lowered: &str) -> Vec<String> {
        let mut tokens = vec![self.token(lowered)];
        tokens.extend(self.written_token(lowered));
        tokens
    }

    fn tagged(&self, stem: &str) -> String {
        let mut token = String::with_capacity(self.lang.len() + 1 + stem.len());
        token.push_str(self.lang);
        token.push(':');
        token.push_str(stem);
        token
    }
}

/// The stem of a lowercased word in `lang` (see [`Analyzer::stem`]).
pub fn stem(lang: &str, lowered: &str) -> String {
    Analyzer::new(lang).stem(lowered)
}

/// The analysed token of a word in `lang`: `lang:stem`.
pub fn word_token(lang: &str, lowered: &str) -> String {
    Analyzer::new(lang).token(lowered)
}

/// The tokens a single query word looks for in `lang` (see [`Analyzer::tokens`]).
pub fn word_tokens(lang: &str, lowered: &str) -> Vec<String> {
    Analyzer::new(lang).tokens(lowered)
}

/// The tokens of a run of unspaced script: its overlapping bigrams (each
/// character NFKC-normalised, so half-width Katakana equals full-width), or
/// the run itself when it is one character; with their byte ranges in `run`.
pub fn run_bigrams(run: &str) -> Vec<(usize, usize, String)> {
    let chars: Vec<(usize, usize, String)> = run
        .char_indices()
        .map(|(at, c)| {
            let normal: String = std::iter::once(c)
                .nfkc()
                .flat_map(char::to_lowercase)
                .collect();
            (at, at + c.len_utf8(), normal)
        })
        .collect();
    if chars.len() < 2 {
        return chars;
    }
    chars
        .windows(2)
        .map(|pair| (pair[0].0, pair[1].1, format!("{}{}", pair[0].2, pair[1].2)))
        .collect()
}

/// The bigrams of a run, without their ranges.
pub fn run_tokens(run: &str) -> Vec<String> {
    run_bigrams(run).into_iter().map(|(_, _, t)| t).collect()
}

/// Whether a piece is a run of unspaced script (by its first character).
pub fn is_run(piece: &str) -> bool {
    piece.chars().next().is_some_and(is_unspaced)
}

/// The index tokens a query term's pieces (lowercased) look for in messages
/// of `lang`, in order: consecutive positions for a phrase.
pub fn term_tokens(lang: &str, pieces: &[String]) -> Vec<String> {
    let analyzer = Analyzer::new(lang);
    pieces
        .iter()
        .flat_map(|piece| {
            if is_run(piece) {
                run_tokens(piece)
            } else {
                vec![analyzer.token(piece)]
            }
        })
        .collect()
}

/// One token of analysed text, with the byte range it came from (a word, or
/// a bigram's two characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub start: usize,
    pub end: usize,
    /// Consecutive for consecutive tokens: phrases match positions.
    pub position: usize,
    /// The analysed token (`en:refund`, or a bigram).
    pub text: String,
    /// The token of the word's stem as written, at the same position, when it
    /// differs from `text` (see [`Analyzer::written_token`]).
    pub written: Option<String>,
    /// The folded unstemmed word, for words (prefixes and typos match it).
    pub word: Option<String>,
}

/// Analyses a message's text in its language.
pub fn analyse(lang: &str, text: &str) -> Vec<Token> {
    let analyzer = Analyzer::new(lang);
    let mut tokens = Vec::new();
    for piece in pieces(text) {
        let slice = &text[piece.start..piece.end];
        match piece.kind {
            PieceKind::Word => {
                let lowered = lower(slice);
                tokens.push(Token {
                    start: piece.start,
                    end: piece.end,
                    position: tokens.len(),
                    text: analyzer.token(&lowered),
                    written: analyzer.written_token(&lowered),
                    word: Some(fold(&lowered)),
                });
            }
            PieceKind::Run => {
                for (start, end, bigram) in run_bigrams(slice) {
                    tokens.push(Token {
                        start: piece.start + start,
                        end: piece.start + end,
                        position: tokens.len(),
                        text: bigram,
                        written: None,
                        word: None,
                    });
                }
            }
        }
    }
    tokens
}

/// The folded unstemmed words of `text`, each once, sorted: what prefixes
/// and typos match (no stemming, so cheaper than [`analyse`]).
pub fn folded_words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = pieces(text)
        .into_iter()
        .filter(|piece| piece.kind == PieceKind::Word)
        .map(|piece| fold(&lower(&text[piece.start..piece.end])))
        .collect();
    words.sort_unstable();
    words.dedup();
    words
}

/// Text with the language it is to be analysed in, as the index's `text`
/// field takes it: `lang`, U+0001, the text (see [`split_tagged`]).
pub fn tagged(lang: &str, text: &str) -> String {
    let mut out = String::with_capacity(lang.len() + 1 + text.len());
    out.push_str(lang);
    out.push('\u{1}');
    out.push_str(text);
    out
}

/// The language and text of [`tagged`] text; untagged text is in `default`.
pub fn split_tagged<'a>(text: &'a str, default: &'a str) -> (&'a str, &'a str) {
    text.split_once('\u{1}').unwrap_or((default, text))
}

/// The optimal string alignment distance between two words (Levenshtein
/// where swapping two adjacent characters is one edit), by characters; what
/// `word~N` allows, as the index's fuzzy query counts it.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(tokens: &[Token]) -> Vec<&str> {
        tokens.iter().map(|t| t.text.as_str()).collect()
    }

    #[test]
    fn inflections_share_a_stem_and_other_words_do_not() {
        assert_eq!(stem("en", "refunds"), stem("en", "refund"));
        assert_eq!(stem("en", "refunded"), stem("en", "refund"));
        assert_ne!(stem("en", "refuse"), stem("en", "refund"));
        assert_eq!(stem("de", "bestellungen"), stem("de", "bestellung"));
        assert_eq!(stem("es", "pedidos"), stem("es", "pedido"));
        assert_eq!(stem("fr", "remboursements"), stem("fr", "remboursement"));
        assert_eq!(stem("ru", &lower("заказы")), stem("ru", &lower("заказ")));
        assert_eq!(stem("pt", "pedidos"), stem("pt", "pedido"));
    }

    #[test]
    fn words_written_without_accents_share_the_stem_of_words_written_with_them() {
        assert_eq!(stem("fr", "cafe"), stem("fr", "café"));
        assert_eq!(stem("es", "dias"), stem("es", "días"));
        assert_eq!(stem("tr", "iadeler"), stem("tr", &lower("İadeler")));
        // A word written accurately also keeps its own stem when that differs.
        assert_eq!(Analyzer::new("en").written_token("refunds"), None);
        assert_eq!(fold(&lower("Новый")), "новый");
    }

    #[test]
    fn folding_drops_accents_and_case_in_every_script_that_has_them() {
        assert_eq!(fold(&lower("Café")), "cafe");
        assert_eq!(fold(&lower("İADE")), "iade");
        assert_eq!(fold(&lower("ıade")), "iade");
        assert_eq!(fold(&lower("Straße")), "strasse");
        assert_eq!(fold(&lower("ÉTÉ")), "ete");
        assert_eq!(fold(&lower("Ёлка")), "елка");
        // Decomposed input folds the same as composed.
        assert_eq!(fold(&lower("cafe\u{301}")), "cafe");
        // Devanagari vowel signs are letters' parts, not accents.
        assert_eq!(fold("नमस्ते"), "नमस्ते");
        // Arabic short vowels go.
        assert_eq!(fold("مُسَاعَدَة"), "مساعدة");
    }

    #[test]
    fn pieces_split_spaced_words_and_unspaced_runs() {
        let text = "注文がまだ届いていません order #123 नमस्ते café";
        let got: Vec<(&str, PieceKind)> = pieces(text)
            .iter()
            .map(|p| (&text[p.start..p.end], p.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                ("注文がまだ届いていません", PieceKind::Run),
                ("order", PieceKind::Word),
                ("123", PieceKind::Word),
                ("नमस्ते", PieceKind::Word),
                ("café", PieceKind::Word),
            ]
        );
    }

    #[test]
    fn runs_are_bigrams_so_any_substring_is_a_phrase_of_them() {
        let tokens = analyse("zh", "我想申请退款");
        assert_eq!(texts(&tokens), vec!["我想", "想申", "申请", "请退", "退款"]);
        assert_eq!(run_tokens("退款"), vec!["退款"]);
        assert_eq!(run_tokens("注"), vec!["注"]);
        // Half-width Katakana is full-width Katakana.
        assert_eq!(run_tokens("ｶﾀ"), run_tokens("カタ"));
    }

    #[test]
    fn words_are_tagged_with_their_language_and_keep_their_folded_form() {
        let tokens = analyse("en", "Refunded, CAFÉ");
        assert_eq!(texts(&tokens), vec!["en:refund", "en:cafe"]);
        assert_eq!(tokens[0].word.as_deref(), Some("refunded"));
        assert_eq!(tokens[1].position, 1);
    }

    #[test]
    fn tags_are_primary_subtags() {
        assert_eq!(primary_tag("pt-BR").unwrap(), "pt");
        assert_eq!(primary_tag("EN").unwrap(), "en");
        assert_eq!(primary_tag("fil").unwrap(), "fil");
        assert!(primary_tag("english").is_err());
        assert!(primary_tag("e1").is_err());
        assert!(primary_tag("").is_err());
    }

    #[test]
    fn detection_by_script_or_detector_falls_back_to_the_default() {
        use Detection::*;
        let german = "Ich habe meine Bestellung noch nicht erhalten und möchte wissen, wo sie ist";
        let spanish = "Quiero saber el estado de mi pedido, por favor";
        assert_eq!(detect(german, "en", Full), "de");
        assert_eq!(detect(spanish, "en", Full), "es");
        // Latin script alone says nothing: the default.
        assert_eq!(detect(german, "en", Script), "en");
        assert_eq!(detect(spanish, "en", Off), "en");
        // Not confident, or by script only: the script decides, unless the
        // default is written in it.
        let russian = "Где мой заказ? Я жду уже две недели.";
        for detection in [Script, Full] {
            assert_eq!(detect(russian, "en", detection), "ru");
            assert_eq!(detect(russian, "uk", detection), "uk");
            assert_eq!(detect("我想申请退款", "en", detection), "zh");
            assert_eq!(detect("ok", "fr", detection), "fr");
            assert_eq!(detect("", "fr", detection), "fr");
        }
        assert_eq!(detect(russian, "en", Off), "en");
    }

    #[test]
    fn edit_distance_counts_a_swap_as_one() {
        assert_eq!(edit_distance("refnud", "refund"), 1);
        assert_eq!(edit_distance("refund", "refund"), 0);
        assert_eq!(edit_distance("rfund", "refund"), 1);
        assert_eq!(edit_distance("rfnud", "refund"), 2);
        assert_eq!(edit_distance("cat", "dog"), 3);
    }
}
