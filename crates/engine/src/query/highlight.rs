//! Snippets and highlights from message text.
//!
//! Matching reuses `tokenize`, so a word is highlighted exactly when the
//! index would have matched it; the original spelling and case are kept.

use std::collections::HashSet;

use convlog_querylang::{QueryAst, Role, tokenize};

const ELLIPSIS: &str = "…";

/// Wraps every token of `text` that equals one of `terms` (already lowercased tokens) in <b>…</b>, HTML-escaping everything else (& < > " ').
pub fn highlight(text: &str, terms: &HashSet<String>) -> String {
    render(text, &tokenize(text), terms, 0, text.len())
}

/// A window of at most `max_chars` characters of `text` around its first matching token, highlighted like `highlight`, with "…" where text was cut; None when no token matches.
///
/// The "…" markers are not counted in `max_chars`.
pub fn snippet(text: &str, terms: &HashSet<String>, max_chars: usize) -> Option<String> {
    let tokens = tokenize(text);
    let &(hit_start, hit_end, _) = tokens.iter().find(|t| terms.contains(&t.2))?;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let n = chars.len();
    if n <= max_chars {
        return Some(render(text, &tokens, terms, 0, text.len()));
    }
    if max_chars == 0 {
        return Some(ELLIPSIS.to_string());
    }
    let byte_of = |i: usize| chars.get(i).map_or(text.len(), |&(b, _)| b);
    let hs = chars.partition_point(|&(b, _)| b < hit_start);
    let he = chars.partition_point(|&(b, _)| b < hit_end);

    // Some context before the hit reads better than starting on it.
    let mut start = hs.saturating_sub(max_chars / 4);
    if start + max_chars < he {
        // The hit would not fit after the lead-in: show as much of it as possible.
        start = he.saturating_sub(max_chars).min(hs);
    }
    start = start.min(n - max_chars);

    let alnum = |i: usize| chars[i].1.is_alphanumeric();
    let is_boundary = |k: usize| k == 0 || k >= n || !(alnum(k - 1) && alnum(k));
    // Moving a cut to a word boundary is only worth a little lost context;
    // long unbroken runs (URLs, CJK) are cut where they fall.
    let slack = (max_chars / 4).min(24);

    if !is_boundary(start)
        && let Some(k) = (start + 1..=(start + slack).min(hs)).find(|&k| is_boundary(k))
    {
        start = k;
    }
    if start > 0 {
        // A cut snippet reads better starting on a word than on ". ".
        while start < hs && (chars[start].1.is_whitespace() || ".,;:!?".contains(chars[start].1)) {
            start += 1;
        }
    }

    let mut end = (start + max_chars).min(n);
    let floor = he.max(start + 1);
    if !is_boundary(end)
        && let Some(k) = (floor..end).rev().take(slack).find(|&k| is_boundary(k))
    {
        end = k;
    }
    if end < n {
        while end > floor && chars[end - 1].1.is_whitespace() {
            end -= 1;
        }
    }

    let mut out = String::new();
    if start > 0 {
        out.push_str(ELLIPSIS);
    }
    out.push_str(&render(text, &tokens, terms, byte_of(start), byte_of(end)));
    if end < n {
        out.push_str(ELLIPSIS);
    }
    Some(out)
}

/// The set of tokens worth highlighting for a message of `role`: the positive terms of `ast` whose role is None or equals `role`.
pub fn terms_for_role(ast: &QueryAst, role: Role) -> HashSet<String> {
    ast.positive_terms()
        .into_iter()
        .filter(|(r, _)| r.is_none_or(|r| r == role))
        .flat_map(|(_, tokens)| tokens)
        .collect()
}

/// Renders `text[from..to]`; `tokens` come from the whole text so a window
/// edge never turns a cut word into a spurious match.
fn render(
    text: &str,
    tokens: &[(usize, usize, String)],
    terms: &HashSet<String>,
    from: usize,
    to: usize,
) -> String {
    let mut out = String::with_capacity(to - from + 16);
    let mut pos = from;
    for (start, end, token) in tokens {
        if *end <= from || *start >= to || !terms.contains(token) {
            continue;
        }
        let (s, e) = ((*start).max(from), (*end).min(to));
        escape_into(&text[pos..s], &mut out);
        out.push_str("<b>");
        escape_into(&text[s..e], &mut out);
        out.push_str("</b>");
        pos = e;
    }
    escape_into(&text[pos..to], &mut out);
    out
}

fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use convlog_querylang::{QueryLimits, parse};
    use proptest::prelude::*;

    fn set(words: &[&str]) -> HashSet<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    /// The visible text of a rendered snippet, for counting characters.
    fn plain(html: &str) -> String {
        html.replace("<b>", "")
            .replace("</b>", "")
            .replace(ELLIPSIS, "")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    }

    #[test]
    fn highlights_whole_tokens_case_insensitively() {
        assert_eq!(
            highlight("Refund? refunding, REFUND.", &set(&["refund"])),
            "<b>Refund</b>? refunding, <b>REFUND</b>."
        );
        assert_eq!(highlight("nothing here", &set(&["x"])), "nothing here");
        assert_eq!(highlight("", &set(&["x"])), "");
    }

    #[test]
    fn escapes_html() {
        assert_eq!(
            highlight("<a href='x'>Refund & \"more\"</a>", &set(&["refund"])),
            "&lt;a href=&#39;x&#39;&gt;<b>Refund</b> &amp; &quot;more&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn unicode_highlight() {
        assert_eq!(
            highlight(
                "Die Größe: CAFÉ, Возврат!",
                &set(&["größe", "café", "возврат"])
            ),
            "Die <b>Größe</b>: <b>CAFÉ</b>, <b>Возврат</b>!"
        );
    }

    #[test]
    fn snippet_none_without_match() {
        assert_eq!(snippet("hello world", &set(&["bye"]), 50), None);
        assert_eq!(snippet("", &set(&["bye"]), 50), None);
        assert_eq!(snippet("refunding", &set(&["refund"]), 50), None);
    }

    #[test]
    fn snippet_short_text_is_whole() {
        assert_eq!(
            snippet("a <refund>", &set(&["refund"]), 50).as_deref(),
            Some("a &lt;<b>refund</b>&gt;")
        );
    }

    #[test]
    fn snippet_window_starts_before_hit_on_word_boundary() {
        let text = format!(
            "{} refund {}",
            "lorem ipsum ".repeat(20),
            "dolor sit ".repeat(20)
        );
        let s = snippet(&text, &set(&["refund"]), 40).unwrap();
        assert!(s.starts_with(ELLIPSIS) && s.ends_with(ELLIPSIS), "{s}");
        let visible = plain(&s);
        assert!(visible.chars().count() <= 40, "{s}");
        // About a quarter of the window precedes the hit.
        let before = visible.find("refund").unwrap();
        assert!((5..=12).contains(&before), "{s}");
        // Cuts land between words.
        let first = visible.split(' ').next().unwrap();
        let last = visible.rsplit(' ').next().unwrap();
        assert!(["lorem", "ipsum"].contains(&first), "{s}");
        assert!(["dolor", "sit"].contains(&last), "{s}");
    }

    #[test]
    fn snippet_hit_at_edges() {
        let text = format!("refund {}", "word ".repeat(50));
        let s = snippet(&text, &set(&["refund"]), 30).unwrap();
        assert!(s.starts_with("<b>refund</b> "), "{s}");
        assert!(s.ends_with(ELLIPSIS));

        let text = format!("{}refund", "word ".repeat(50));
        let s = snippet(&text, &set(&["refund"]), 30).unwrap();
        assert!(
            s.starts_with(ELLIPSIS) && s.ends_with("<b>refund</b>"),
            "{s}"
        );
        assert!(plain(&s).chars().count() <= 30);
    }

    #[test]
    fn snippet_never_splits_multibyte_chars() {
        let text = format!(
            "{}Возврат {}",
            "日本語のテキスト。".repeat(30),
            "ёжик ".repeat(30)
        );
        for max in [1, 2, 5, 7, 10, 33, 100] {
            let s = snippet(&text, &set(&["возврат"]), max).unwrap();
            assert!(plain(&s).chars().count() <= max, "{max}: {s}");
            assert!(s.contains("<b>"), "{max}: {s}");
        }
    }

    #[test]
    fn snippet_does_not_match_words_cut_by_the_window() {
        // "refunding" cut to "refund" by the window edge must not light up.
        let text = format!("refund {}refunding", "x ".repeat(3));
        let s = snippet(&text, &set(&["refund"]), 14).unwrap();
        assert_eq!(s.matches("<b>").count(), 1, "{s}");
    }

    #[test]
    fn snippet_zero_width() {
        assert_eq!(
            snippet("a refund", &set(&["refund"]), 0).as_deref(),
            Some(ELLIPSIS)
        );
    }

    #[test]
    fn terms_for_role_filters_roles_and_negations() {
        let ast = parse(
            "user:refund bot:\"did not understand\" cancel -spam NOT agent:hi",
            QueryLimits::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(terms_for_role(&ast, Role::User), set(&["refund", "cancel"]));
        assert_eq!(
            terms_for_role(&ast, Role::Bot),
            set(&["did", "not", "understand", "cancel"])
        );
        assert_eq!(terms_for_role(&ast, Role::Agent), set(&["cancel"]));
    }

    proptest! {
        #[test]
        fn snippet_respects_bounds(
            text in "[a-zé日 .,<&\n]{0,200}",
            max in 0usize..80,
        ) {
            let terms = set(&["a", "é", "日日", "ab"]);
            match snippet(&text, &terms, max) {
                None => prop_assert!(tokenize(&text).iter().all(|t| !terms.contains(&t.2))),
                Some(s) => {
                    prop_assert!(plain(&s).chars().count() <= max);
                    if max >= 1 {
                        prop_assert!(s.contains("<b>"));
                    }
                }
            }
            let h = highlight(&text, &terms);
            prop_assert_eq!(plain(&h), text);
        }
    }
}
