//! The `q` query language of conversation search: the grammar, the parser
//! and the tokenizer the index shares with it.
//!
//! It imports only `convlog-core` (for message roles): no index, store or
//! HTTP, so the language can be tested, fuzzed and reused on its own.
//!
//! Parsing is a single left-to-right pass with one token of lookahead; the
//! only recursion is through parentheses, which `QueryLimits::max_depth`
//! bounds, so hostile input costs at most linear time and bounded stack.

use std::fmt;

/// Max token length in bytes; longer tokens are dropped by the index and by `tokenize`.
pub const MAX_TOKEN_LEN: usize = 64;

pub use convlog_core::Role;

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryAst {
    /// One word (tokens.len()==1) or a phrase (tokens.len()>1), optionally limited to a role.
    Term {
        /// Only messages of this role can match, when set.
        role: Option<Role>,
        /// Lowercased tokens, as produced by `tokenize`.
        tokens: Vec<String>,
    },
    /// Every child must match.
    And(Vec<QueryAst>),
    /// At least one child must match.
    Or(Vec<QueryAst>),
    /// The child must not match.
    Not(Box<QueryAst>),
}

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

/// Splits text into lowercased word tokens exactly like the index does; returns (byte_start, byte_end, token).
pub fn tokenize(text: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                push_token(text, s, i, &mut out);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        push_token(text, s, text.len(), &mut out);
    }
    out
}

fn push_token(text: &str, start: usize, end: usize, out: &mut Vec<(usize, usize, String)>) {
    // The index's RemoveLongFilter runs before lowercasing, so the limit
    // applies to the original bytes, not the lowercased ones.
    if end - start > MAX_TOKEN_LEN {
        return;
    }
    // tantivy's LowerCaser maps char by char (no final-sigma rule), unlike
    // `str::to_lowercase`; query tokens must equal indexed tokens exactly.
    let token: String = text[start..end]
        .chars()
        .flat_map(char::to_lowercase)
        .collect();
    out.push((start, end, token));
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
    /// The positive (not under NOT) terms, for highlighting: (role, tokens).
    ///
    /// A term under an even number of NOTs counts as positive.
    pub fn positive_terms(&self) -> Vec<(Option<Role>, Vec<String>)> {
        let mut out = Vec::new();
        self.collect_positive(true, &mut out);
        out
    }

    fn collect_positive(&self, positive: bool, out: &mut Vec<(Option<Role>, Vec<String>)>) {
        match self {
            QueryAst::Term { role, tokens } => {
                if positive {
                    out.push((*role, tokens.clone()));
                }
            }
            QueryAst::And(children) | QueryAst::Or(children) => {
                for child in children {
                    child.collect_positive(positive, out);
                }
            }
            QueryAst::Not(inner) => inner.collect_positive(!positive, out),
        }
    }

    /// Evaluates the query against one message (role + its tokens in order); phrases need adjacent tokens.
    pub fn matches_message(&self, role: Role, tokens: &[String]) -> bool {
        match self {
            QueryAst::Term {
                role: wanted,
                tokens: needle,
            } => {
                if wanted.is_some_and(|w| w != role) {
                    return false;
                }
                match needle.len() {
                    // Never produced by `parse`; `windows(0)` would panic.
                    0 => false,
                    1 => tokens.contains(&needle[0]),
                    n => tokens.windows(n).any(|w| w == needle.as_slice()),
                }
            }
            QueryAst::And(children) => children.iter().all(|c| c.matches_message(role, tokens)),
            QueryAst::Or(children) => children.iter().any(|c| c.matches_message(role, tokens)),
            QueryAst::Not(inner) => !inner.matches_message(role, tokens),
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
    Term(Option<Role>, Vec<String>),
    Eof,
}

#[derive(Debug)]
struct Token {
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

    fn next_token(&mut self) -> Result<Token, ParseError> {
        while self.ch(self.i).is_some_and(char::is_whitespace) {
            self.i += 1;
        }
        let pos = self.i;
        let Some(c) = self.ch(pos) else {
            return Ok(Token {
                pos,
                kind: Kind::Eof,
            });
        };
        let simple = |kind| Token { pos, kind };
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

    fn word(&mut self, pos: usize) -> Result<Token, ParseError> {
        let mut end = pos;
        while self.ch(end).is_some_and(is_word_char) {
            end += 1;
        }
        let text = self.slice(pos, end);
        if let Some((head, _)) = text.split_once(':')
            && let Some(role) = Role::parse(head)
        {
            // Role names are ASCII, so their byte length is their char length.
            let rest = pos + head.len() + 1;
            if rest < end {
                self.i = end;
                return Ok(term(pos, Some(role), self.slice(rest, end)));
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
        self.i = end;
        let kind = match text {
            "AND" => Kind::And,
            "OR" => Kind::Or,
            "NOT" => Kind::Not,
            _ => return Ok(term(pos, None, text)),
        };
        Ok(Token { pos, kind })
    }

    fn phrase(
        &mut self,
        pos: usize,
        role: Option<Role>,
        quote: usize,
    ) -> Result<Token, ParseError> {
        let mut close = quote + 1;
        loop {
            match self.ch(close) {
                Some('"') => break,
                Some(_) => close += 1,
                None => return Err(ParseError::new(quote, "unterminated quote")),
            }
        }
        self.i = close + 1;
        Ok(term(pos, role, self.slice(quote + 1, close)))
    }
}

fn term(pos: usize, role: Option<Role>, text: &str) -> Token {
    let tokens = tokenize(text).into_iter().map(|(_, _, t)| t).collect();
    Token {
        pos,
        kind: Kind::Term(role, tokens),
    }
}

fn can_start_unary(kind: &Kind) -> bool {
    matches!(
        kind,
        Kind::LParen | Kind::Not | Kind::Minus | Kind::Plus | Kind::Term(..)
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
    cur: Token,
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

    fn bump(&mut self) -> Result<Token, ParseError> {
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
            Kind::Term(..) => {
                let Kind::Term(role, tokens) = self.bump()?.kind else {
                    return Err(ParseError::new(pos, "unexpected token"));
                };
                if tokens.is_empty() {
                    return Ok(None);
                }
                self.terms += 1;
                if self.terms > self.limits.max_terms {
                    return Err(ParseError::new(
                        pos,
                        format!("query has more than {} terms", self.limits.max_terms),
                    ));
                }
                Ok(Some(QueryAst::Term { role, tokens }))
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
        }
    }

    fn ph(role: Option<Role>, s: &[&str]) -> QueryAst {
        QueryAst::Term {
            role,
            tokens: s.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn not(a: QueryAst) -> QueryAst {
        QueryAst::Not(Box::new(a))
    }

    fn toks(text: &str) -> Vec<String> {
        tokenize(text).into_iter().map(|(_, _, t)| t).collect()
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
    fn tokenize_offsets_and_case() {
        assert_eq!(
            tokenize("Hello, World42!"),
            vec![(0, 5, "hello".into()), (7, 14, "world42".into())]
        );
        assert_eq!(
            toks("café Größe ПРИВЕТ мир"),
            ["café", "größe", "привет", "мир"]
        );
        assert!(tokenize("  ,.;!? ").is_empty());
    }

    #[test]
    fn tokenize_drops_long_tokens_by_original_bytes() {
        let ok = "a".repeat(MAX_TOKEN_LEN);
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(toks(&format!("{ok} {long} b")), [ok.as_str(), "b"]);
        // 32 two-byte chars is exactly the limit; 33 is over it.
        assert_eq!(toks(&"é".repeat(32)).len(), 1);
        assert!(toks(&"é".repeat(33)).is_empty());
    }

    #[test]
    fn tokenize_lowercases_per_char_like_tantivy() {
        // No final-sigma special case, matching the index's LowerCaser.
        assert_eq!(toks("ΟΔΟΣ"), ["οδοσ"]);
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
        // Unknown or capitalised prefixes are just text.
        assert_eq!(p("foo:bar"), Some(ph(None, &["foo", "bar"])));
        assert_eq!(p("User:x"), Some(ph(None, &["user", "x"])));
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
    fn positive_terms_skip_negated() {
        let ast = p("user:a (b OR -c) NOT \"d e\" NOT NOT f").unwrap();
        assert_eq!(
            ast.positive_terms(),
            vec![
                (Some(Role::User), vec!["a".to_string()]),
                (None, vec!["b".to_string()]),
                (None, vec!["f".to_string()]),
            ]
        );
    }

    #[test]
    fn matches_message_words_and_phrases() {
        let msg = toks("Sorry, I did not understand your refund request.");
        let m = |q: &str| p(q).unwrap().matches_message(Role::Bot, &msg);
        assert!(m("refund"));
        assert!(m("REFUND sorry"));
        assert!(!m("refund cancel"));
        assert!(m("refund OR cancel"));
        assert!(m("\"did not understand\""));
        assert!(!m("\"did understand\""));
        assert!(!m("\"refund your\""));
        assert!(m("-cancel"));
        assert!(!m("NOT refund"));
        assert!(m("(cancel OR request) -spam"));
        assert!(!m("under-stand"));
    }

    #[test]
    fn matches_message_roles() {
        let msg = toks("I want a refund");
        let ast = p("user:refund").unwrap();
        assert!(ast.matches_message(Role::User, &msg));
        assert!(!ast.matches_message(Role::Bot, &msg));
        let ast = p("bot:\"a refund\"").unwrap();
        assert!(ast.matches_message(Role::Bot, &msg));
        assert!(!ast.matches_message(Role::Agent, &msg));
        let ast = p("-user:refund").unwrap();
        assert!(!ast.matches_message(Role::User, &msg));
        assert!(ast.matches_message(Role::Bot, &msg));
    }

    #[test]
    fn matches_message_handles_degenerate_terms() {
        let empty = QueryAst::Term {
            role: None,
            tokens: vec![],
        };
        assert!(!empty.matches_message(Role::User, &toks("x")));
        let long = ph(None, &["a", "b", "c"]);
        assert!(!long.matches_message(Role::User, &toks("a b")));
        assert!(!QueryAst::Or(vec![]).matches_message(Role::User, &[]));
        assert!(QueryAst::And(vec![]).matches_message(Role::User, &[]));
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
                    let msg = toks(&q);
                    let _ = ast.matches_message(Role::User, &msg);
                    for (_, tokens) in ast.positive_terms() {
                        prop_assert!(!tokens.is_empty());
                    }
                }
                Ok(None) => {}
                Err(e) => prop_assert!(e.position <= len, "{e} for len {len}"),
            }
        }

        #[test]
        fn tokenize_spans_are_consistent(s in "\\PC{0,80}") {
            let mut last_end = 0;
            for (start, end, token) in tokenize(&s) {
                prop_assert!(start >= last_end && start < end && end - start <= MAX_TOKEN_LEN);
                prop_assert!(s[start..end].chars().all(char::is_alphanumeric));
                prop_assert!(!token.is_empty());
                last_end = end;
            }
        }

        #[test]
        fn a_single_word_parses_to_its_tokens(s in "[a-zA-Zé0-9]{1,20}") {
            prop_assume!(!matches!(s.as_str(), "AND" | "OR" | "NOT"));
            let ast = parse(&s, QueryLimits::default()).unwrap();
            prop_assert_eq!(ast, Some(QueryAst::Term { role: None, tokens: vec![s.to_lowercase()] }));
        }
    }
}
