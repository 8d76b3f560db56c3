//! Snippets and highlights from message text.
//!
//! What to mark comes from `QueryAst::hits` over the text analysed as the
//! index analysed it, so a word is highlighted exactly when the index would
//! have matched it (inflected, folded, prefixed or misspelt); the original
//! spelling and case are kept.

const ELLIPSIS: &str = "…";

/// Wraps every range of `hits` (byte ranges of `text`, sorted, disjoint) in
/// <b>…</b>, HTML-escaping everything else (& < > " ').
pub fn highlight(text: &str, hits: &[(usize, usize)]) -> String {
    render(text, hits, 0, text.len())
}

/// A window of at most `max_chars` characters of `text` around its first
/// hit, highlighted like `highlight`, with "…" where text was cut; None when
/// there is no hit.
///
/// The "…" markers are not counted in `max_chars`.
pub fn snippet(text: &str, hits: &[(usize, usize)], max_chars: usize) -> Option<String> {
    let &(hit_start, hit_end) = hits.first()?;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let n = chars.len();
    if n <= max_chars {
        return Some(render(text, hits, 0, text.len()));
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
    out.push_str(&render(text, hits, byte_of(start), byte_of(end)));
    if end < n {
        out.push_str(ELLIPSIS);
    }
    Some(out)
}

/// Renders `text[from..to]`; `hits` come from the whole text so a window
/// edge never turns a cut word into a spurious match.
fn render(text: &str, hits: &[(usize, usize)], from: usize, to: usize) -> String {
    let mut out = String::with_capacity(to - from + 16);
    let mut pos = from;
    for &(start, end) in hits {
        if end <= from || start >= to {
            continue;
        }
        let (s, e) = (start.max(from), end.min(to));
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
    use convlog_querylang::{QueryLimits, Role, analysis, parse};
    use proptest::prelude::*;

    /// What `q` marks in `text`, as an English user message.
    fn hits(text: &str, q: &str) -> Vec<(usize, usize)> {
        let ast = parse(q, QueryLimits::default()).unwrap().unwrap();
        ast.hits(Role::User, "en", &analysis::analyse("en", text))
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
    fn highlights_whole_words_inflected_or_not() {
        let text = "Refund? refunding, REFUND. refuse";
        assert_eq!(
            highlight(text, &hits(text, "refund")),
            "<b>Refund</b>? <b>refunding</b>, <b>REFUND</b>. refuse"
        );
        assert_eq!(
            highlight("nothing here", &hits("nothing here", "x")),
            "nothing here"
        );
        assert_eq!(highlight("", &[]), "");
    }

    #[test]
    fn escapes_html() {
        let text = "<a href='x'>Refund & \"more\"</a>";
        assert_eq!(
            highlight(text, &hits(text, "refund")),
            "&lt;a href=&#39;x&#39;&gt;<b>Refund</b> &amp; &quot;more&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn unicode_highlight() {
        let text = "Die Größe: CAFÉ, Возврат! 我想申请退款";
        assert_eq!(
            highlight(text, &hits(text, "GRÖSSE OR cafe OR возврат OR 退款")),
            "Die <b>Größe</b>: <b>CAFÉ</b>, <b>Возврат</b>! 我想申请<b>退款</b>"
        );
    }

    #[test]
    fn snippet_none_without_match() {
        assert_eq!(
            snippet("hello world", &hits("hello world", "bye"), 50),
            None
        );
        assert_eq!(snippet("", &[], 50), None);
        assert_eq!(snippet("refuse", &hits("refuse", "refund"), 50), None);
    }

    #[test]
    fn snippet_short_text_is_whole() {
        assert_eq!(
            snippet("a <refund>", &hits("a <refund>", "refund"), 50).as_deref(),
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
        let s = snippet(&text, &hits(&text, "refund"), 40).unwrap();
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
        let s = snippet(&text, &hits(&text, "refund"), 30).unwrap();
        assert!(s.starts_with("<b>refund</b> "), "{s}");
        assert!(s.ends_with(ELLIPSIS));

        let text = format!("{}refund", "word ".repeat(50));
        let s = snippet(&text, &hits(&text, "refund"), 30).unwrap();
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
            let s = snippet(&text, &hits(&text, "возврат"), max).unwrap();
            assert!(plain(&s).chars().count() <= max, "{max}: {s}");
            assert!(s.contains("<b>"), "{max}: {s}");
        }
    }

    #[test]
    fn snippet_does_not_match_words_cut_by_the_window() {
        // "refundxyz" cut to "refund" by the window edge must not light up.
        let text = format!("refund {}refundxyz", "x ".repeat(3));
        let s = snippet(&text, &hits(&text, "refund"), 14).unwrap();
        assert_eq!(s.matches("<b>").count(), 1, "{s}");
    }

    #[test]
    fn snippet_zero_width() {
        assert_eq!(
            snippet("a refund", &hits("a refund", "refund"), 0).as_deref(),
            Some(ELLIPSIS)
        );
    }

    proptest! {
        #[test]
        fn snippet_respects_bounds(
            text in "[a-zé日 .,<&\n]{0,200}",
            max in 0usize..80,
        ) {
            let marked = hits(&text, "a OR é OR 日日 OR ab");
            match snippet(&text, &marked, max) {
                None => prop_assert!(marked.is_empty()),
                Some(s) => {
                    prop_assert!(plain(&s).chars().count() <= max);
                    if max >= 1 {
                        prop_assert!(s.contains("<b>"));
                    }
                }
            }
            let h = highlight(&text, &marked);
            prop_assert_eq!(plain(&h), text);
        }
    }
}
