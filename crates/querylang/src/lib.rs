//! The `q` query language of conversation search: the grammar, the parser
//! and the text analysis the index shares with it ([`analysis`]).
//!
//! It imports only `convlog-core` (for message roles) and text-processing
//! crates: no index, store or HTTP, so the language can be tested, fuzzed and
//! reused on its own.
//!
//! Parsing is a single left-to-right pass with one token of lookahead; the
//! only recursion is through parentheses, which `QueryLimits::max_depth`
//! bounds, so hostile input costs at most linear time and bounded stack.

pub mod analysis;

use analysis::{PieceKind, Token};
use std::fmt;

pub use convlog_core::Role;

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryAst {
    /// One word or run (tokens.len()==1) or a phrase (tokens.len()>1),
    /// optionally limited to a role.
    Term {
        /// Only messages of this role can match, when set.
        role: Option<Role>,
        /// The pieces of the term (see [`analysis::pieces`]), lowercased
        /// ([`analysis::lower`]); analysed per language when the query is built.
        tokens: Vec<String>,
        /// How the (single) word matches: exactly (with its inflections), as
        /// a prefix, or within some edits.
        mode: Mode,
    },
    /// A message field equals a value: `intent:greeting`.
    Field { field: FieldPrefix, value: String },
    /// Every child must match.
    And(Vec<QueryAst>),
    /// At least one child must match.
    Or(Vec<QueryAst>),
    /// The child must not match.
    Not(Box<QueryAst>),
}

/// How a term's word matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The word and its inflections (phrases: each word so).
    Exact,
    /// `word*`: any word starting with it.
    Prefix,
    /// `word~N`: any word within N edits (a swap of two neighbours is one).
    Fuzzy(u8),
}

/// The message fields a query can name: `intent:`, `node:`, `flow:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldPrefix {
    /// The intent the bot's NLU gave the message.
    Intent,
    /// The id of the node the message went through.
    Node,
    /// The flow the message was in.
    Flow,
}

impl FieldPrefix {
    /// Every prefix, in the order error messages list them.
    pub const ALL: [FieldPrefix; 3] = [FieldPrefix::Intent, FieldPrefix::Node, FieldPrefix::Flow];

    pub fn as_str(self) -> &'static str {
        match self {
            FieldPrefix::Intent => "intent",
            FieldPrefix::Node => "node",
            FieldPrefix::Flow => "flow",
        }
    }

    fn parse(name: &str) -> Option<FieldPrefix> {
        FieldPrefix::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(name))
    }
}

/// Most edits `word~N` allows.
pub const MAX_EDITS: u8 = 2;
/// Fewest characters before `*`.
pub const MIN_PREFIX_CHARS: usize = 2;

/// Why a query was refused; `position` is the 0-based character (not byte) offset in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Character offset the error refers to.
    pub position: usize,
    /// Human-readable explanation.
    pub reason: String,
}

impl ParseError {
    fn new(position: usize, reason: impl Into<String>) -> Self {
        ParseError {
            position,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at position {}: {}", self.position, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// Limits that keep hostile queries cheap.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// Longest accepted query, in characters.
    pub max_len: usize,
    /// Deepest accepted nesting of parentheses and negations.
    pub max_depth: usize,
    /// Most terms (words and phrases) accepted in one query.
    pub max_terms: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_len: 1024,
            max_depth: 16,
            max_terms: 64,
        }
    }
}

/// The prefixes a query may start a word with, for error messages.
fn known_prefixes() -> String {
    let roles =
        [Role::User, Role::Bot, Role::Agent, Role::System].map(|r| format!("{}:", r.as_str()));
    let fields = FieldPrefix::ALL.map(|f| format!("{}:", f.as_str()));
    roles
        .into_iter()
        .chain(fields)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses `q`; Ok(None) when it holds no searchable term (empty or only punctuation).
pub fn parse(q: &str, limits: QueryLimits) -> Result<Option<QueryAst>, ParseError> {
    // Checked before anything else so a megabyte query costs nothing more
    // than walking `max_len` characters.
    if q.chars().nth(limits.max_len).is_some() {
        return Err(ParseError::new(
            limits.max_len,
            format!("query is longer than {} characters", limits.max_len),
        ));
    }
    let mut parser = Parser::new(q, limits)?;
    if parser.cur.kind == Kind::Eof {
        return Ok(None);
    }
    let ast = parser.parse_or(0)?;
    match parser.cur.kind {
        Kind::Eof => Ok(ast),
        Kind::RParen => Err(ParseError::new(
            parser.cur.pos,
            "unmatched closing parenthesis",
        )),
        // parse_or only stops at `)` or the end; anything else is a bug,
        // reported rather than panicking.
        _ => Err(ParseError::new(parser.cur.pos, "unexpected token")),
    }
}

impl QueryAst {
    /// The byte ranges of `text` (a message of `role` analysed in `lang` into
    /// `tokens`) that the query's positive terms (those under an even number
    /// of NOTs) match: what snippets and highlights mark, sorted, merged.
    pub fn hits(&self, role: Role, lang: &str, tokens: &[Token]) -> Vec<(usize, usize)> {
        let mut hits = Vec::new();
        self.collect_hits(true, role, lang, tokens, &mut hits);
        hits.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(hits.len());
        for (start, end) in hits {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged
    }

    fn collect_hits(
        &self,
        positive: bool,
        role: Role,
        lang: &str,
        tokens: &[Token],
        out: &mut Vec<(usize, usize)>,
    ) {
        match self {
            QueryAst::Term {
                role: wanted,
                tokens: pieces,
                mode,
            } => {
                if !positive || wanted.is_some_and(|w| w != role) || pieces.is_empty() {
                    return;
                }
                let range = |t: &Token| (t.start, t.end);
                match (mode, pieces.as_slice()) {
                    (Mode::Prefix, [word]) => {
                        let prefix = analysis::fold(word);
                        out.extend(
                            tokens
                                .iter()
                                .filter(|t| t.word.as_ref().is_some_and(|w| w.starts_with(&prefix)))
                                .map(range),
                        );
                    }
                    (Mode::Fuzzy(edits), [word]) => {
                        let word = analysis::fold(word);
                        out.extend(
                            tokens
                                .iter()
                                .filter(|t| {
                                    t.word.as_ref().is_some_and(|w| {
                                        analysis::edit_distance(w, &word) <= usize::from(*edits)
                                    })
                                })
                                .map(range),
                        );
                    }
                    (_, [word]) if !analysis::is_run(word) => {
                        let wanted = analysis::word_tokens(lang, word);
                        out.extend(
                            tokens
                                .iter()
                                .filter(|t| {
                                    wanted.contains(&t.text)
                                        || t.written.as_ref().is_some_and(|w| wanted.contains(w))
                                })
                                .map(range),
                        );
                    }
                    _ => {
                        let wanted = analysis::term_tokens(lang, pieces);
                        if wanted.is_empty() || wanted.len() > tokens.len() {
                            return;
                        }
                        for window in tokens.windows(wanted.len()) {
                            if window.iter().zip(&wanted).all(|(t, w)| t.text == *w) {
                                out.extend(window.iter().map(range));
                            }
                        }
                    }
                }
            }
            QueryAst::Field { .. } => {}
            QueryAst::And(children) | QueryAst::Or(children) => {
                for child in children {
                    child.collect_hits(positive, role, lang, tokens, out);
                }
            }
            QueryAst::Not(inner) => inner.collect_hits(!positive, role, lang, tokens, out),
        }
    }
}

#[derive(Debug, PartialEq)]
enum Kind {
    LParen,
    RParen,
    And,
    Or,
    Not,
    Minus,
    Plus,
    /// Tokens may be empty: the term is syntactically present but dropped.
    Term(Option<Role>, Vec<String>, Mode),
    Field(FieldPrefix, String),
    Eof,
}

#[derive(Debug)]
struct Lexeme {
    pos: usize,
    kind: Kind,
}

struct Lexer<'a> {
    src: &'a str,
    chars: Vec<(usize, char)>,
    i: usize,
}

fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && c != '(' && c != ')' && c != '"'
}

/// A prefix that names a field or a role: a letter, then letters, digits or `_`.
fn is_prefix_name(head: &str) -> bool {
    let mut chars = head.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer {
            src,
            chars: src.char_indices().collect(),
            i: 0,
        }
    }

    fn ch(&self, i: usize) -> Option<char> {
        self.chars.get(i).map(|&(_, c)| c)
    }

    fn byte(&self, i: usize) -> usize {
        self.chars.get(i).map_or(self.src.len(), |&(b, _)| b)
    }

    fn slice(&self, from: usize, to: usize) -> &'a str {
        &self.src[self.byte(from)..self.byte(to)]
    }

    fn next_token(&mut self) -> Result<Lexeme, ParseError> {
        while self.ch(self.i).is_some_and(char::is_whitespace) {
            self.i += 1;
        }
        let pos = self.i;
        let Some(c) = self.ch(pos) else {
            return Ok(Lexeme {
                pos,
                kind: Kind::Eof,
            });
        };
        let simple = |kind| Lexeme { pos, kind };
        match c {
            '(' => {
                self.i += 1;
                Ok(simple(Kind::LParen))
            }
            ')' => {
                self.i += 1;
                Ok(simple(Kind::RParen))
            }
            '"' => self.phrase(pos, None, pos),
            // A lone `-` or `+` (as in "a - b") is punctuation, not an
            // operator, so it falls through to the word branch and is dropped.
            '+' | '-'
                if self
                    .ch(pos + 1)
                    .is_some_and(|n| !n.is_whitespace() && n != ')') =>
            {
                self.i += 1;
                Ok(simple(if c == '+' { Kind::Plus } else { Kind::Minus }))
            }
            _ => self.word(pos),
        }
    }

    fn word(&mut self, pos: usize) -> Result<Lexeme, ParseError> {
        let mut end = pos;
        while self.ch(end).is_some_and(is_word_char) {
            end += 1;
        }
        let text = self.slice(pos, end);
        if let Some((head, rest)) = text.split_once(':')
            && is_prefix_name(head)
            // `https://…` is text, not a field.
            && !rest.starts_with('/')
        {
            // Prefix names are ASCII, so their byte length is their char length.
            let value_at = pos + head.len() + 1;
            let role = Role::parse(&head.to_ascii_lowercase());
            let field = FieldPrefix::parse(head);
            if role.is_none() && field.is_none() && (value_at < end || self.ch(end) == Some('"')) {
                return Err(ParseError::new(
                    pos,
                    format!(
                        "unknown field `{head}:`; known prefixes are {}; to search for the text itself, quote it",
                        known_prefixes()
                    ),
                ));
            }
            if let Some(field) = field {
                let value = if value_at < end {
                    self.i = end;
                    self.slice(value_at, end).to_string()
                } else if self.ch(end) == Some('"') {
                    let close = self.closing_quote(end)?;
                    self.i = close + 1;
                    self.slice(end + 1, close).to_string()
                } else {
                    return Err(ParseError::new(
                        pos,
                        format!("`{head}:` needs a value, e.g. `{head}:greeting`"),
                    ));
                };
                return Ok(Lexeme {
                    pos,
                    kind: Kind::Field(field, value),
                });
            }
            if let Some(role) = role {
                if value_at < end {
                    self.i = end;
                    return word_term(pos, value_at, Some(role), self.slice(value_at, end));
                }
                match self.ch(end) {
                    Some('"') => return self.phrase(pos, Some(role), end),
                    Some('(') => {
                        return Err(ParseError::new(
                            end,
                            format!("{head}: applies to a word or phrase, not to parentheses"),
                        ));
                    }
                    // "user:" followed by a space is ordinary text.
                    _ => {}
                }
            }
        }
        self.i = end;
        let kind = match text {
            "AND" => Kind::And,
            "OR" => Kind::Or,
            "NOT" => Kind::Not,
            _ => return word_term(pos, pos, None, text),
        };
        Ok(Lexeme { pos, kind })
    }

    fn closing_quote(&self, quote: usize) -> Result<usize, ParseError> {
        let mut close = quote + 1;
        loop {
            match self.ch(close) {
                Some('"') => return Ok(close),
                Some(_) => close += 1,
                None => return Err(ParseError::new(quote, "unterminated quote")),
            }
        }
    }

    fn phrase(
        &mut self,
        pos: usize,
        role: Option<Role>,
        quote: usize,
    ) -> Result<Lexeme, ParseError> {
        let close = self.closing_quote(quote)?;
        self.i = close + 1;
        let text = self.slice(quote + 1, close);
        if let Some(at) = text.chars().position(|c| c == '*' || c == '~') {
            return Err(ParseError::new(
                quote + 1 + at,
                "`*` and `~` apply to single words, not inside quotes",
            ));
        }
        Ok(term(pos, role, text, Mode::Exact))
    }
}

/// A word outside quotes (its text starting at character `at`), with its
/// `*` or `~N` suffix read.
fn word_term(pos: usize, at: usize, role: Option<Role>, text: &str) -> Result<Lexeme, ParseError> {
    let (stem, mode) = if let Some(stem) = text.strip_suffix('*') {
        (stem, Mode::Prefix)
    } else if let Some((stem, edits)) = text.rsplit_once('~')
        && edits.chars().all(|c| c.is_ascii_digit())
    {
        let edits = match edits {
            "" => 1,
            digits => match digits.parse::<u8>() {
                Ok(n @ 1..=MAX_EDITS) => n,
                _ => {
                    return Err(ParseError::new(
                        at + stem.chars().count(),
                        format!("`~` allows 1 to {MAX_EDITS} edits, not {digits}"),
                    ));
                }
            },
        };
        (stem, Mode::Fuzzy(edits))
    } else {
        (text, Mode::Exact)
    };
    if mode != Mode::Exact {
        let operator = if mode == Mode::Prefix { "*" } else { "~" };
        let pieces = analysis::pieces(stem);
        match pieces.as_slice() {
            [piece]
                if piece.kind == PieceKind::Word && piece.start == 0 && piece.end == stem.len() => {
            }
            [piece] if piece.kind == PieceKind::Run => {
                return Err(ParseError::new(
                    at,
                    format!(
                        "`{operator}` applies to words of spaced scripts; CJK and Thai text already matches any part of two or more characters"
                    ),
                ));
            }
            _ => {
                return Err(ParseError::new(
                    at,
                    format!("`{operator}` applies to one word of letters and digits"),
                ));
            }
        }
        if mode == Mode::Prefix && stem.chars().count() < MIN_PREFIX_CHARS {
            return Err(ParseError::new(
                at,
                format!("`*` needs at least {MIN_PREFIX_CHARS} characters before it"),
            ));
        }
    }
    Ok(term(pos, role, stem, mode))
}

fn term(pos: usize, role: Option<Role>, text: &str, mode: Mode) -> Lexeme {
    let tokens = analysis::pieces(text)
        .into_iter()
        .map(|piece| analysis::lower(&text[piece.start..piece.end]))
        .collect();
    Lexeme {
        pos,
        kind: Kind::Term(role, tokens, mode),
    }
}

fn can_start_unary(kind: &Kind) -> bool {
    matches!(
        kind,
        Kind::LParen | Kind::Not | Kind::Minus | Kind::Plus | Kind::Term(..) | Kind::Field(..)
    )
}

fn op_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::And => "AND",
        Kind::Or => "OR",
        Kind::Not => "NOT",
        Kind::Minus => "-",
        Kind::Plus => "+",
        _ => "operator",
    }
}

/// Builds an And/Or node, flattening same-kind children and collapsing
/// trivial nodes so equivalent queries get equal trees.
fn combine(is_and: bool, items: Vec<QueryAst>) -> Option<QueryAst> {
    let mut flat = Vec::with_capacity(items.len());
    for item in items {
        match item {
            QueryAst::And(children) if is_and => flat.extend(children),
            QueryAst::Or(children) if !is_and => flat.extend(children),
            other => flat.push(other),
        }
    }
    if flat.len() <= 1 {
        return flat.pop();
    }
    Some(if is_and {
        QueryAst::And(flat)
    } else {
        QueryAst::Or(flat)
    })
}

struct Parser<'a> {
    lex: Lexer<'a>,
    /// The lookahead token.
    cur: Lexeme,
    limits: QueryLimits,
    terms: usize,
}

impl<'a> Parser<'a> {
    fn new(q: &'a str, limits: QueryLimits) -> Result<Self, ParseError> {
        let mut lex = Lexer::new(q);
        let cur = lex.next_token()?;
        Ok(Parser {
            lex,
            cur,
            limits,
            terms: 0,
        })
    }

    fn bump(&mut self) -> Result<Lexeme, ParseError> {
        let next = self.lex.next_token()?;
        Ok(std::mem::replace(&mut self.cur, next))
    }

    /// Consumes an infix or prefix operator, insisting that an operand follows.
    fn bump_operator(&mut self) -> Result<(), ParseError> {
        let op = self.bump()?;
        if can_start_unary(&self.cur.kind) {
            Ok(())
        } else {
            Err(ParseError::new(
                op.pos,
                format!("missing operand after {}", op_name(&op.kind)),
            ))
        }
    }

    fn depth_error(&self, pos: usize) -> ParseError {
        ParseError::new(
            pos,
            format!("query nests deeper than {}", self.limits.max_depth),
        )
    }

    fn parse_or(&mut self, depth: usize) -> Result<Option<QueryAst>, ParseError> {
        let mut items = Vec::new();
        items.extend(self.parse_and(depth)?);
        while self.cur.kind == Kind::Or {
            self.bump_operator()?;
            items.extend(self.parse_and(depth)?);
        }
        Ok(combine(false, items))
    }

    fn parse_and(&mut self, depth: usize) -> Result<Option<QueryAst>, ParseError> {
        let mut items = Vec::new();
        items.extend(self.parse_unary(depth)?);
        loop {
            if self.cur.kind == Kind::And {
                self.bump_operator()?;
            } else if !can_start_unary(&self.cur.kind) {
                break;
            }
            items.extend(self.parse_unary(depth)?);
        }
        Ok(combine(true, items))
    }

    /// Prefix operators are read in a loop rather than recursively so a
    /// long run of `NOT`s cannot grow the stack.
    fn parse_unary(&mut self, depth: usize) -> Result<Option<QueryAst>, ParseError> {
        let mut negations = 0usize;
        loop {
            match self.cur.kind {
                Kind::Not | Kind::Minus => {
                    negations += 1;
                    if depth + negations > self.limits.max_depth {
                        return Err(self.depth_error(self.cur.pos));
                    }
                }
                Kind::Plus => {}
                _ => break,
            }
            self.bump_operator()?;
        }
        let ast = self.parse_primary(depth + negations)?;
        Ok(ast.map(|inner| (0..negations).fold(inner, |node, _| QueryAst::Not(Box::new(node)))))
    }

    fn parse_primary(&mut self, depth: usize) -> Result<Option<QueryAst>, ParseError> {
        let pos = self.cur.pos;
        match self.cur.kind {
            Kind::LParen => {
                if depth + 1 > self.limits.max_depth {
                    return Err(self.depth_error(pos));
                }
                self.bump()?;
                if self.cur.kind == Kind::RParen {
                    return Err(ParseError::new(pos, "empty parentheses"));
                }
                let inner = self.parse_or(depth + 1)?;
                if self.cur.kind != Kind::RParen {
                    return Err(ParseError::new(pos, "unclosed parenthesis"));
                }
                self.bump()?;
                Ok(inner)
            }
            Kind::Term(..) | Kind::Field(..) => {
                let ast = match self.bump()?.kind {
                    Kind::Term(_, tokens, _) if tokens.is_empty() => return Ok(None),
                    Kind::Term(role, tokens, mode) => QueryAst::Term { role, tokens, mode },
                    Kind::Field(field, value) => QueryAst::Field { field, value },
                    _ => return Err(ParseError::new(pos, "unexpected token")),
                };
                self.terms += 1;
                if self.terms > self.limits.max_terms {
                    return Err(ParseError::new(
                        pos,
                        format!("query has more than {} terms", self.limits.max_terms),
                    ));
                }
                Ok(Some(ast))
            }
            Kind::And | Kind::Or => Err(ParseError::new(
                pos,
                format!("missing operand before {}", op_name(&self.cur.kind)),
            )),
            Kind::RParen => Err(ParseError::new(pos, "unmatched closing parenthesis")),
            Kind::Eof => Err(ParseError::new(pos, "unexpected end of query")),
            Kind::Not | Kind::Minus | Kind::Plus => {
                Err(ParseError::new(pos, "unexpected operator"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(q: &str) -> Option<QueryAst> {
        parse(q, QueryLimits::default()).unwrap_or_else(|e| panic!("{q:?}: {e}"))
    }

    fn err(q: &str) -> ParseError {
        match parse(q, QueryLimits::default()) {
            Err(e) => e,
            Ok(ast) => panic!("{q:?} parsed as {ast:?}"),
        }
    }

    fn w(s: &str) -> QueryAst {
        QueryAst::Term {
            role: None,
            tokens: vec![s.to_string()],
            mode: Mode::Exact,
        }
    }

    fn ph(role: Option<Role>, s: &[&str]) -> QueryAst {
        QueryAst::Term {
            role,
            tokens: s.iter().map(|t| t.to_string()).collect(),
            mode: Mode::Exact,
        }
    }

    fn moded(s: &str, mode: Mode) -> QueryAst {
        QueryAst::Term {
            role: None,
            tokens: vec![s.to_string()],
            mode,
        }
    }

    fn not(a: QueryAst) -> QueryAst {
        QueryAst::Not(Box::new(a))
    }

    #[test]
    fn role_round_trips() {
        for role in [Role::User, Role::Bot, Role::Agent, Role::System] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("User"), None);
        assert_eq!(Role::parse("customer"), None);
    }

    #[test]
    fn word_and_phrase() {
        assert_eq!(p("Refund"), Some(w("refund")));
        assert_eq!(
            p("\"Did NOT understand\""),
            Some(ph(None, &["did", "not", "understand"]))
        );
        assert_eq!(p("\"Refund!\""), Some(w("refund")));
    }

    #[test]
    fn empty_and_punctuation_only() {
        assert_eq!(p(""), None);
        assert_eq!(p("   \t\n"), None);
        assert_eq!(p("!!! ... \"?!\" - +"), None);
        assert_eq!(p("(!!!)"), None);
        assert_eq!(p("a AND ..."), Some(w("a")));
        assert_eq!(p("... OR a"), Some(w("a")));
        assert_eq!(p("NOT ???"), None);
    }

    #[test]
    fn role_qualifiers() {
        assert_eq!(p("user:refund"), Some(ph(Some(Role::User), &["refund"])));
        assert_eq!(
            p("bot:\"did not understand\""),
            Some(ph(Some(Role::Bot), &["did", "not", "understand"]))
        );
        assert_eq!(p("agent:Hi"), Some(ph(Some(Role::Agent), &["hi"])));
        assert_eq!(p("system:x"), Some(ph(Some(Role::System), &["x"])));
        // Prefixes are case-insensitive; unknown ones are refused, naming the known ones.
        assert_eq!(p("User:x"), Some(ph(Some(Role::User), &["x"])));
        let unknown = err("refund foo:bar");
        assert_eq!(unknown.position, 7);
        assert!(
            unknown.reason.contains("unknown field `foo:`"),
            "{}",
            unknown.reason
        );
        assert!(unknown.reason.contains("intent:"), "{}", unknown.reason);
        // Not prefixes: times, URLs, a colon at the end, quoted text.
        assert_eq!(p("12:30"), Some(ph(None, &["12", "30"])));
        assert_eq!(p("https://x.io"), Some(ph(None, &["https", "x", "io"])));
        assert_eq!(p("\"foo:bar\""), Some(ph(None, &["foo", "bar"])));
        assert_eq!(p("note:"), Some(w("note")));
        // A qualifier followed by a space qualifies nothing.
        assert_eq!(p("user: x"), Some(QueryAst::And(vec![w("user"), w("x")])));
        assert_eq!(p("user:AND"), Some(ph(Some(Role::User), &["and"])));
        assert_eq!(p("user:e-mail"), Some(ph(Some(Role::User), &["e", "mail"])));
        assert_eq!(p("user:..."), None);
        assert_eq!(p("-user:spam"), Some(not(ph(Some(Role::User), &["spam"]))));
    }

    #[test]
    fn precedence() {
        assert_eq!(
            p("a b OR c"),
            Some(QueryAst::Or(vec![
                QueryAst::And(vec![w("a"), w("b")]),
                w("c")
            ]))
        );
        assert_eq!(
            p("a OR b c"),
            Some(QueryAst::Or(vec![
                w("a"),
                QueryAst::And(vec![w("b"), w("c")])
            ]))
        );
        assert_eq!(
            p("a AND b OR c AND d"),
            Some(QueryAst::Or(vec![
                QueryAst::And(vec![w("a"), w("b")]),
                QueryAst::And(vec![w("c"), w("d")]),
            ]))
        );
        assert_eq!(p("NOT a b"), Some(QueryAst::And(vec![not(w("a")), w("b")])));
        assert_eq!(
            p("NOT a OR b"),
            Some(QueryAst::Or(vec![not(w("a")), w("b")]))
        );
    }

    #[test]
    fn parentheses_and_flattening() {
        assert_eq!(
            p("a (b OR c)"),
            Some(QueryAst::And(vec![
                w("a"),
                QueryAst::Or(vec![w("b"), w("c")])
            ]))
        );
        assert_eq!(
            p("(a b) c"),
            Some(QueryAst::And(vec![w("a"), w("b"), w("c")]))
        );
        assert_eq!(
            p("(a OR b) OR (c OR d)"),
            Some(QueryAst::Or(vec![w("a"), w("b"), w("c"), w("d")]))
        );
        assert_eq!(p("((a))"), Some(w("a")));
        assert_eq!(
            p("NOT(a OR b)"),
            Some(not(QueryAst::Or(vec![w("a"), w("b")])))
        );
    }

    #[test]
    fn plus_and_minus() {
        assert_eq!(p("+a -b"), Some(QueryAst::And(vec![w("a"), not(w("b"))])));
        assert_eq!(p("-spam"), Some(not(w("spam"))));
        assert_eq!(p("NOT spam"), Some(not(w("spam"))));
        assert_eq!(p("-\"x y\""), Some(not(ph(None, &["x", "y"]))));
        assert_eq!(p("--a"), Some(not(not(w("a")))));
        assert_eq!(p("-(a b)"), Some(not(QueryAst::And(vec![w("a"), w("b")]))));
        // A free-standing dash is punctuation.
        assert_eq!(p("a - b"), Some(QueryAst::And(vec![w("a"), w("b")])));
        assert_eq!(p("(a -)"), Some(w("a")));
    }

    #[test]
    fn lowercase_operators_are_words() {
        assert_eq!(
            p("cats and dogs or not"),
            Some(QueryAst::And(
                ["cats", "and", "dogs", "or", "not"]
                    .into_iter()
                    .map(w)
                    .collect()
            ))
        );
        assert_eq!(p("And"), Some(w("and")));
        assert_eq!(p("\"AND\""), Some(w("and")));
    }

    #[test]
    fn compound_words_become_phrases() {
        assert_eq!(p("e-mail"), Some(ph(None, &["e", "mail"])));
        assert_eq!(p("don't"), Some(ph(None, &["don", "t"])));
        assert_eq!(p("a-"), Some(w("a")));
    }

    #[test]
    fn unicode_lowercasing() {
        assert_eq!(p("CAFÉ"), Some(w("café")));
        assert_eq!(p("GRÖSSE"), Some(w("grösse")));
        assert_eq!(p("Größe"), Some(w("größe")));
        assert_eq!(p("ВОЗВРАТ"), Some(w("возврат")));
    }

    #[test]
    fn error_positions() {
        let cases: &[(&str, usize, &str)] = &[
            ("(a", 0, "unclosed parenthesis"),
            ("a (b (c)", 2, "unclosed parenthesis"),
            ("a)", 1, "unmatched closing parenthesis"),
            (")", 0, "unmatched closing parenthesis"),
            ("a AND", 2, "missing operand after AND"),
            ("a OR", 2, "missing operand after OR"),
            ("OR b", 0, "missing operand before OR"),
            ("AND b", 0, "missing operand before AND"),
            ("NOT", 0, "missing operand after NOT"),
            ("a NOT", 2, "missing operand after NOT"),
            ("a AND OR b", 2, "missing operand after AND"),
            ("(a OR)", 3, "missing operand after OR"),
            ("-AND", 0, "missing operand after -"),
            ("+)", 1, "unmatched closing parenthesis"),
            ("()", 0, "empty parentheses"),
            ("a ( )", 2, "empty parentheses"),
            ("\"abc", 0, "unterminated quote"),
            ("a \"b\" \"c", 6, "unterminated quote"),
            ("bot:\"abc", 4, "unterminated quote"),
            (
                "user:(a)",
                5,
                "user: applies to a word or phrase, not to parentheses",
            ),
        ];
        for &(q, pos, reason) in cases {
            let e = err(q);
            assert_eq!((e.position, e.reason.as_str()), (pos, reason), "{q:?}");
        }
    }

    #[test]
    fn error_positions_count_chars_not_bytes() {
        assert_eq!(err("café (x").position, 5);
        assert_eq!(err("日本語 \"x").position, 4);
    }

    #[test]
    fn display() {
        assert_eq!(err("(a").to_string(), "at position 0: unclosed parenthesis");
    }

    #[test]
    fn length_limit() {
        let limits = QueryLimits {
            max_len: 5,
            ..QueryLimits::default()
        };
        assert!(parse("abcde", limits).is_ok());
        assert!(parse("ééééé", limits).is_ok());
        let e = parse("abcdef", limits).unwrap_err();
        assert_eq!(e.position, 5);
        let huge = "a ".repeat(1_000_000);
        assert_eq!(err(&huge).position, 1024);
    }

    #[test]
    fn depth_limit() {
        let limits = QueryLimits {
            max_depth: 3,
            ..QueryLimits::default()
        };
        assert!(parse("(((a)))", limits).is_ok());
        assert_eq!(parse("((((a))))", limits).unwrap_err().position, 3);
        assert!(parse("NOT NOT -a", limits).is_ok());
        assert_eq!(parse("NOT NOT -+-a", limits).unwrap_err().position, 10);
        assert_eq!(parse("((NOT (a)))", limits).unwrap_err().position, 6);
        // Sequential groups do not add up.
        assert!(parse("(((a))) (((b))) NOT NOT NOT c", limits).is_ok());
    }

    #[test]
    fn hostile_nesting_is_refused_without_recursion_blowup() {
        let limits = QueryLimits {
            max_len: usize::MAX,
            ..QueryLimits::default()
        };
        let deep = "(".repeat(200_000);
        assert_eq!(parse(&deep, limits).unwrap_err().position, 16);
        let nots = "NOT ".repeat(200_000) + "a";
        assert_eq!(parse(&nots, limits).unwrap_err().position, 64);
        let quotes = "\"".repeat(200_001);
        assert_eq!(parse(&quotes, limits).unwrap_err().position, 200_000);
    }

    #[test]
    fn term_limit() {
        let limits = QueryLimits {
            max_terms: 3,
            ..QueryLimits::default()
        };
        assert!(parse("a b \"c d\" ... !!", limits).is_ok());
        let e = parse("a b c dd", limits).unwrap_err();
        assert_eq!(e.position, 6);
        assert_eq!(e.reason, "query has more than 3 terms");
    }

    #[test]
    fn prefixes_and_typos() {
        assert_eq!(p("Refu*"), Some(moded("refu", Mode::Prefix)));
        assert_eq!(p("refnud~"), Some(moded("refnud", Mode::Fuzzy(1))));
        assert_eq!(p("refnud~2"), Some(moded("refnud", Mode::Fuzzy(2))));
        assert_eq!(
            p("user:refu*"),
            Some(QueryAst::Term {
                role: Some(Role::User),
                tokens: vec!["refu".into()],
                mode: Mode::Prefix
            })
        );
        for (q, position, reason) in [
            ("r*", 0, "at least 2 characters"),
            ("*", 0, "one word"),
            ("refund~3", 6, "1 to 2 edits"),
            ("refund~0", 6, "1 to 2 edits"),
            ("e-mail*", 0, "one word"),
            ("退款*", 0, "CJK"),
            ("a \"refu* now\"", 7, "not inside quotes"),
            ("\"x ~ y\"", 3, "not inside quotes"),
        ] {
            let e = err(q);
            assert_eq!(e.position, position, "{q}: {e}");
            assert!(e.reason.contains(reason), "{q}: {e}");
        }
    }

    #[test]
    fn field_prefixes() {
        let field = |field, value: &str| QueryAst::Field {
            field,
            value: value.into(),
        };
        assert_eq!(
            p("intent:greeting"),
            Some(field(FieldPrefix::Intent, "greeting"))
        );
        assert_eq!(
            p("refund node:\"n 1\""),
            Some(QueryAst::And(vec![
                w("refund"),
                field(FieldPrefix::Node, "n 1")
            ]))
        );
        assert_eq!(
            p("-Flow:checkout"),
            Some(not(field(FieldPrefix::Flow, "checkout")))
        );
        assert!(err("intent: x").reason.contains("needs a value"));
    }

    #[test]
    fn hits_mark_inflected_words_phrases_prefixes_and_typos() {
        let text = "Sorry, I did not understand your Refunds request. Refundable? 我想申请退款";
        let tokens = analysis::analyse("en", text);
        let marked = |q: &str, role: Role| -> Vec<&str> {
            p(q).unwrap()
                .hits(role, "en", &tokens)
                .into_iter()
                .map(|(s, e)| &text[s..e])
                .collect()
        };
        // "Refundable" is an inflection of "refund" in English.
        assert_eq!(marked("refund", Role::Bot), ["Refunds", "Refundable"]);
        assert_eq!(marked("user:refund", Role::Bot), Vec::<&str>::new());
        assert_eq!(
            marked("\"did not understand\"", Role::Bot),
            ["did", "not", "understand"]
        );
        assert_eq!(marked("refu*", Role::Bot), ["Refunds", "Refundable"]);
        assert_eq!(marked("refnuds~", Role::Bot), ["Refunds"]);
        assert_eq!(marked("退款", Role::Bot), ["退款"]);
        assert_eq!(marked("申请退款 -sorry", Role::Bot), ["申请退款"]);
        assert_eq!(marked("NOT refund", Role::Bot), Vec::<&str>::new());
    }

    fn hostile_query() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "(",
            ")",
            "\"",
            "+",
            "-",
            ":",
            " ",
            "  ",
            "\t",
            "AND",
            "OR",
            "NOT",
            "and",
            "user:",
            "bot:",
            "agent:",
            "system:",
            "foo:",
            "a",
            "Zz9",
            "e-mail",
            "é",
            "ß",
            "İ",
            "Σ",
            "日本",
            "привет",
            "😀",
            "\u{301}",
            "\u{0}",
            "\n",
        ]);
        prop::collection::vec(pieces, 0..48).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn never_panics_and_positions_are_in_range(q in hostile_query(), small in any::<bool>()) {
            let limits = if small {
                QueryLimits { max_len: 40, max_depth: 3, max_terms: 5 }
            } else {
                QueryLimits::default()
            };
            let len = q.chars().count();
            match parse(&q, limits) {
                Ok(Some(ast)) => {
                    let tokens = analysis::analyse("en", &q);
                    for (start, end) in ast.hits(Role::User, "en", &tokens) {
                        prop_assert!(start < end && end <= q.len());
                    }
                }
                Ok(None) => {}
                Err(e) => prop_assert!(e.position <= len, "{e} for len {len}"),
            }
        }

        #[test]
        fn pieces_are_ordered_and_within_the_text(s in "\\PC{0,80}") {
            let mut last_end = 0;
            for piece in analysis::pieces(&s) {
                prop_assert!(piece.start >= last_end && piece.start < piece.end);
                prop_assert!(piece.end - piece.start <= analysis::MAX_PIECE_LEN);
                prop_assert!(s.is_char_boundary(piece.start) && s.is_char_boundary(piece.end));
                last_end = piece.end;
            }
        }

        #[test]
        fn a_single_word_parses_to_its_tokens(s in "[a-zA-Zé0-9]{1,20}") {
            prop_assume!(!matches!(s.as_str(), "AND" | "OR" | "NOT"));
            let ast = parse(&s, QueryLimits::default()).unwrap();
            prop_assert_eq!(ast, Some(QueryAst::Term { role: None, tokens: vec![s.to_lowercase()], mode: Mode::Exact }));
        }
    }
}
