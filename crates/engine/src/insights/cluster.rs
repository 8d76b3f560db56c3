//! Groups short texts by similarity: paraphrases and near duplicates of one
//! need fall together (see `docs/insights.md`).
//!
//! 1. **Features** (in parallel): each text is analysed as the index analyses
//!    it, in its language (folded, stemmed, CJK bigrams); words with digits
//!    (order numbers, amounts, times) and single letters are left out, and a
//!    word counts once.
//!    A text with no feature left ("???", "12345") is its own folded text.
//! 2. **Typos**: a word one edit (a transposition counts as one) away from a
//!    more frequent word of at least [`MIN_TYPO_CHARS`] letters in the same
//!    language becomes that word ("adress" → "address").
//! 3. **Duplicates**: texts with the same features are one *variant* with a
//!    count (case, punctuation and typos no longer tell them apart).
//! 4. **Weights**: a feature weighs its inverse document frequency, which the
//!    caller gives (the search index's, over every message): words everyone
//!    writes ("I", "my", "please") weigh little, the words of a need much.
//!    A variant is the unit vector of its features' weights.
//! 5. **Leader pass**: variants, most frequent first, join the cluster whose
//!    centroid (the count-weighted sum of its variants) is the most similar
//!    (cosine > [`THRESHOLD`]) among the clusters sharing one of the
//!    variant's heaviest words, or start one. A centroid, unlike a pair of
//!    texts, doesn't chain one need into the next through a text that
//!    mentions both.
//! 6. **Refinement** (in parallel): every variant moves to the most similar
//!    final centroid, which undoes the leader pass's dependence on order.

use convlog_querylang::analysis::{analyse, edit_distance, fold, lower};
use rayon::prelude::*;
use rustc_hash::FxHashMap as HashMap;

/// The cosine similarity between a text and a cluster's centroid that a
/// text must exceed to join it. A word of difference joins: three words of
/// equal weight sharing two give 0.67, two sharing one 0.5, and a rarer
/// (heavier) replacement word lowers that.
pub const THRESHOLD: f32 = 0.45;
/// Heaviest words of a variant whose clusters are its candidates.
const CANDIDATE_WORDS: usize = 3;
/// Most clusters looked at per candidate word (the largest come first).
const MAX_SCAN: usize = 128;
/// The shortest word (in characters) a typo is looked for in: shorter words
/// are one edit from too many others ("cat", "car").
pub const MIN_TYPO_CHARS: usize = 5;
/// Words shown per cluster.
const SHOWN_TERMS: usize = 5;
/// Words in a cluster's label.
const LABEL_TERMS: usize = 3;
/// The least weight in a centroid, relative to its heaviest word, of a word
/// shown (most of the cluster's texts have it) and of a word in its label.
const SHOWN_WEIGHT: f32 = 0.2;
const LABEL_WEIGHT: f32 = 0.5;

/// One text to cluster, in its language (a BCP 47 primary tag).
#[derive(Debug, Clone, Copy)]
pub struct Text<'a> {
    pub text: &'a str,
    pub lang: &'a str,
}

/// A cluster: the texts in it (indexes into the input, the most frequent
/// variants first, each variant's texts in input order) and its words.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub members: Vec<usize>,
    /// The first text of each variant, most frequent variant first.
    pub variants: Vec<usize>,
    /// Its heaviest words (at least [`SHOWN_WEIGHT`] of the heaviest's
    /// weight), as users most often wrote them (folded), heaviest first.
    pub terms: Vec<String>,
    /// Its heaviest [`LABEL_TERMS`] words (at least [`LABEL_WEIGHT`] of the
    /// heaviest's weight) in the order the most frequent text has them.
    pub label: String,
}

/// The features of one text: (feature, the word as written).
type Features = Vec<(String, String)>;

fn features(text: Text<'_>) -> Features {
    let mut out: Features = Vec::new();
    for token in analyse(text.lang, text.text) {
        let surface = match token.word {
            // Numbers vary between paraphrases; a letter alone ("it's") says nothing.
            Some(word) if word.chars().any(|c| c.is_numeric()) || word.chars().count() < 2 => {
                continue;
            }
            Some(word) => word,
            None => text.text[token.start..token.end].to_string(),
        };
        if !out.iter().any(|(feature, _)| *feature == token.text) {
            out.push((token.text, surface));
        }
    }
    if out.is_empty() {
        let folded = fold(&lower(text.text.trim()));
        let whole = folded.split_whitespace().collect::<Vec<_>>().join(" ");
        out.push((format!("\u{1}{whole}"), whole));
    }
    out
}

/// The features that are a typo of a more frequent one, mapped to it. Words
/// are looked up by their one-deletion neighbourhoods (as SymSpell does),
/// then checked with the edit distance.
fn spelling(analysed: &[Features]) -> HashMap<&str, &str> {
    let mut counts: HashMap<&str, usize> = HashMap::default();
    for features in analysed {
        for (feature, _) in features {
            *counts.entry(feature.as_str()).or_default() += 1;
        }
    }
    let mut words: Vec<(&str, usize)> = counts
        .into_iter()
        .filter(|(feature, _)| {
            feature
                .split_once(':')
                .is_some_and(|(_, word)| word.chars().count() >= MIN_TYPO_CHARS)
        })
        .collect();
    words.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut known: HashMap<String, Vec<(&str, usize)>> = HashMap::default();
    let mut typos = HashMap::default();
    for (feature, count) in words {
        let (lang, word) = feature.split_once(':').expect("a word feature");
        let keys = deletions(lang, word);
        let better = keys
            .iter()
            .filter_map(|key| known.get(key))
            .flatten()
            .filter(|(other, n)| {
                *n > count && edit_distance(word, other.split_once(':').expect("word").1) <= 1
            })
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)));
        match better {
            Some((other, _)) => {
                typos.insert(feature, *other);
            }
            None => {
                for key in keys {
                    known.entry(key).or_default().push((feature, count));
                }
            }
        }
    }
    typos
}

/// `word` and every string one character shorter, tagged with `lang`.
fn deletions(lang: &str, word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    let mut out = vec![format!("{lang}:{word}")];
    for skip in 0..chars.len() {
        let shorter: String = chars
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, c)| c)
            .collect();
        out.push(format!("{lang}:{shorter}"));
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Texts with the same features.
struct Variant {
    /// Feature ids, ascending.
    terms: Vec<u32>,
    texts: Vec<usize>,
    /// Unit vector over `terms`.
    weights: Vec<f32>,
}

impl Variant {
    fn count(&self) -> f32 {
        self.texts.len() as f32
    }

    /// Its [`CANDIDATE_WORDS`] heaviest features.
    fn candidates(&self) -> Vec<u32> {
        let mut by_weight: Vec<(u32, f32)> = self
            .terms
            .iter()
            .copied()
            .zip(self.weights.iter().copied())
            .collect();
        by_weight.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        by_weight
            .into_iter()
            .take(CANDIDATE_WORDS)
            .map(|(t, _)| t)
            .collect()
    }
}

#[derive(Default, Clone)]
struct Centroid {
    sum: HashMap<u32, f32>,
    norm2: f32,
}

impl Centroid {
    fn add(&mut self, variant: &Variant) {
        let count = variant.count();
        for (&term, &weight) in variant.terms.iter().zip(&variant.weights) {
            let delta = weight * count;
            let value = self.sum.entry(term).or_default();
            self.norm2 += 2.0 * *value * delta + delta * delta;
            *value += delta;
        }
    }

    fn cosine(&self, variant: &Variant) -> f32 {
        if self.norm2 <= 0.0 {
            return 0.0;
        }
        let dot: f32 = variant
            .terms
            .iter()
            .zip(&variant.weights)
            .map(|(term, weight)| weight * self.sum.get(term).copied().unwrap_or(0.0))
            .sum();
        dot / self.norm2.sqrt()
    }
}

/// The clusters' centroids and which clusters hold each feature.
struct Clusters {
    centroids: Vec<Centroid>,
    postings: HashMap<u32, Vec<u32>>,
}

impl Clusters {
    /// The most similar cluster above [`THRESHOLD`] among those sharing
    /// one of `variant`'s heaviest features (and `also`).
    fn best(&self, variant: &Variant, also: Option<u32>) -> Option<(u32, f32)> {
        let mut candidates: Vec<u32> = variant
            .candidates()
            .iter()
            .flat_map(|term| self.postings.get(term).into_iter().flatten().take(MAX_SCAN))
            .copied()
            .chain(also)
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        let mut best: Option<(u32, f32)> = None;
        for cluster in candidates {
            let score = self.centroids[cluster as usize].cosine(variant);
            // Ascending ids: a tie keeps the older cluster.
            if score > THRESHOLD && best.is_none_or(|(_, top)| score > top) {
                best = Some((cluster, score));
            }
        }
        best
    }

    fn add(&mut self, cluster: u32, variant: &Variant) {
        let centroid = &mut self.centroids[cluster as usize];
        for term in &variant.terms {
            if !centroid.sum.contains_key(term) {
                self.postings.entry(*term).or_default().push(cluster);
            }
        }
        centroid.add(variant);
    }

    fn open(&mut self, variant: &Variant) -> u32 {
        let cluster = self.centroids.len() as u32;
        self.centroids.push(Centroid::default());
        self.add(cluster, variant);
        cluster
    }
}

/// Clusters `texts`. `idf` gives the weight of each distinct feature (the
/// analysed tokens the index holds, e.g. `en:refund`; a text without words
/// is one feature starting with U+0001). Groups come by number of texts,
/// descending; ties by their first text.
pub fn cluster<E>(
    texts: &[Text<'_>],
    idf: impl FnOnce(&[&str]) -> Result<Vec<f32>, E>,
) -> Result<Vec<Group>, E> {
    let mut analysed: Vec<Features> = texts.par_iter().map(|t| features(*t)).collect();
    let typos: HashMap<String, String> = spelling(&analysed)
        .into_iter()
        .map(|(typo, word)| (typo.to_string(), word.to_string()))
        .collect();
    analysed.par_iter_mut().for_each(|features| {
        for (feature, _) in features.iter_mut() {
            if let Some(word) = typos.get(feature.as_str()) {
                feature.clone_from(word);
            }
        }
        let mut seen = Vec::with_capacity(features.len());
        features.retain(|(feature, _)| {
            let new = !seen.contains(feature);
            seen.push(feature.clone());
            new
        });
    });

    // Features get ids; texts with the same features are one variant.
    let mut ids: HashMap<&str, u32> = HashMap::default();
    let mut names: Vec<&str> = Vec::new();
    let mut variant_of: HashMap<Vec<u32>, usize> = HashMap::default();
    let mut variants: Vec<Variant> = Vec::new();
    for (i, features) in analysed.iter().enumerate() {
        let mut terms: Vec<u32> = features
            .iter()
            .map(|(feature, _)| {
                *ids.entry(feature.as_str()).or_insert_with(|| {
                    names.push(feature.as_str());
                    names.len() as u32 - 1
                })
            })
            .collect();
        terms.sort_unstable();
        let next = variants.len();
        let at = *variant_of.entry(terms.clone()).or_insert(next);
        if at == next {
            variants.push(Variant {
                terms,
                texts: Vec::new(),
                weights: Vec::new(),
            });
        }
        variants[at].texts.push(i);
    }
    let weights = idf(&names)?;
    variants.par_iter_mut().for_each(|variant| {
        let raw: Vec<f32> = variant
            .terms
            .iter()
            .map(|&t| weights.get(t as usize).copied().unwrap_or(1.0).max(1e-3))
            .collect();
        let norm = raw.iter().map(|w| w * w).sum::<f32>().sqrt();
        variant.weights = raw.into_iter().map(|w| w / norm).collect();
    });
    // Most frequent first; ties by first text, so the result is deterministic.
    variants.sort_by(|a, b| {
        b.texts
            .len()
            .cmp(&a.texts.len())
            .then(a.texts[0].cmp(&b.texts[0]))
    });

    // Leader pass.
    let mut clusters = Clusters {
        centroids: Vec::new(),
        postings: HashMap::default(),
    };
    let mut assigned: Vec<u32> = Vec::with_capacity(variants.len());
    for variant in &variants {
        let cluster = match clusters.best(variant, None) {
            Some((cluster, _)) => {
                clusters.add(cluster, variant);
                cluster
            }
            None => clusters.open(variant),
        };
        assigned.push(cluster);
    }

    // Refinement: each variant to its most similar final centroid.
    let moved: Vec<u32> = variants
        .par_iter()
        .zip(assigned.par_iter())
        .map(|(variant, &own)| clusters.best(variant, Some(own)).map_or(own, |(c, _)| c))
        .collect();

    let mut members: Vec<Vec<usize>> = vec![Vec::new(); clusters.centroids.len()];
    for (v, &cluster) in moved.iter().enumerate() {
        members[cluster as usize].push(v);
    }
    let mut groups: Vec<Group> = members
        .into_par_iter()
        .filter(|vs| !vs.is_empty())
        .map(|vs| group(&vs, &variants, &analysed, &names))
        .collect();
    groups.sort_by(|a, b| {
        b.members
            .len()
            .cmp(&a.members.len())
            .then(a.variants[0].cmp(&b.variants[0]))
    });
    Ok(groups)
}

/// The group of the variants `vs` (most frequent first): members, words, label.
fn group(vs: &[usize], variants: &[Variant], analysed: &[Features], names: &[&str]) -> Group {
    let mut centroid = Centroid::default();
    for &v in vs {
        centroid.add(&variants[v]);
    }
    let mut heaviest: Vec<(u32, f32)> = centroid.sum.into_iter().collect();
    heaviest.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then(names[a.0 as usize].cmp(names[b.0 as usize]))
    });
    let top = heaviest.first().map_or(0.0, |(_, w)| *w);
    heaviest.retain(|(_, w)| *w >= top * SHOWN_WEIGHT);
    heaviest.truncate(SHOWN_TERMS);
    let mut members: Vec<usize> = Vec::new();
    let mut firsts = Vec::with_capacity(vs.len());
    for &v in vs {
        firsts.push(variants[v].texts[0]);
        members.extend(&variants[v].texts);
    }
    // How each heavy feature was most often written in this group.
    let mut written: HashMap<&str, HashMap<&str, usize>> = HashMap::default();
    for &member in &members {
        for (feature, surface) in &analysed[member] {
            if heaviest.iter().any(|(t, _)| names[*t as usize] == feature) {
                *written
                    .entry(feature.as_str())
                    .or_default()
                    .entry(surface.as_str())
                    .or_default() += 1;
            }
        }
    }
    let surface = |term: u32| -> String {
        let counts = &written[names[term as usize]];
        let (word, _) = counts
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .expect("a heavy feature was written");
        word.to_string()
    };
    let terms: Vec<String> = heaviest.iter().map(|(t, _)| surface(*t)).collect();
    // The label: the heaviest words in the order of the most frequent text.
    let first = &analysed[firsts[0]];
    let mut label_terms: Vec<(usize, u32)> = heaviest
        .iter()
        .take(LABEL_TERMS)
        .filter(|(_, w)| *w >= top * LABEL_WEIGHT)
        .map(|(t, _)| {
            let at = first
                .iter()
                .position(|(f, _)| *f == names[*t as usize])
                .unwrap_or(usize::MAX);
            (at, *t)
        })
        .collect();
    label_terms.sort_by_key(|(at, _)| *at);
    let label = label_terms
        .iter()
        .map(|(_, t)| surface(*t))
        .collect::<Vec<_>>()
        .join(" ");
    Group {
        members,
        variants: firsts,
        terms,
        label,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Common words weigh little, the rest much (as an index's statistics would).
    fn idf(names: &[&str]) -> Result<Vec<f32>, ()> {
        const COMMON: &[&str] = &[
            "i", "my", "the", "to", "want", "how", "do", "can", "pleas", "a", "is", "it", "need",
            "with", "by",
        ];
        Ok(names
            .iter()
            .map(|n| {
                let word = n.split_once(':').map_or(*n, |(_, w)| w);
                if COMMON.contains(&word) { 0.3 } else { 4.0 }
            })
            .collect())
    }

    fn run(texts: &[&str]) -> Vec<Group> {
        let texts: Vec<Text> = texts
            .iter()
            .map(|t| Text {
                text: t,
                lang: "en",
            })
            .collect();
        cluster(&texts, idf).unwrap()
    }

    #[test]
    fn paraphrases_and_near_duplicates_fall_together() {
        let groups = run(&[
            "I want to change my delivery address",
            "how do I change the delivery address?",
            "CHANGE DELIVERY ADDRESS!!",
            "change my shipping address please",
            "can I pay with paypal",
            "Pay with PayPal?",
            "paying by paypal ok?",
            "my parrot sings opera",
        ]);
        let sets: Vec<Vec<usize>> = groups.iter().map(|g| g.members.clone()).collect();
        assert_eq!(sets, vec![vec![0, 1, 2, 3], vec![4, 5, 6], vec![7]]);
        assert_eq!(groups[0].label, "change delivery address");
        assert_eq!(groups[0].terms[..3], ["address", "change", "delivery"]);
        assert_eq!(groups[1].label, "pay paypal");
    }

    #[test]
    fn typos_of_a_more_frequent_word_are_that_word() {
        let groups = run(&[
            "refund my payment",
            "refund my payment",
            "refund my paymnet",
            "refnud my payment",
            "table",
            "cable",
        ]);
        let sets: Vec<Vec<usize>> = groups.iter().map(|g| g.members.clone()).collect();
        // Stems shorter than five letters ("tabl", "cabl") are not typos of each other.
        assert_eq!(sets, vec![vec![0, 1, 2, 3], vec![4], vec![5]]);
        assert_eq!(groups[0].label, "refund payment");
    }

    #[test]
    fn numbers_are_left_out_and_texts_without_words_group_by_their_text() {
        let groups = run(&[
            "where is order 123456",
            "Where is order 998877?",
            "???",
            "???",
            "42",
        ]);
        let sets: Vec<Vec<usize>> = groups.iter().map(|g| g.members.clone()).collect();
        assert_eq!(sets, vec![vec![0, 1], vec![2, 3], vec![4]]);
        assert_eq!(groups[0].variants, vec![0]);
        assert_eq!(groups[1].label, "???");
    }

    #[test]
    fn a_text_naming_two_needs_does_not_chain_them() {
        let mut texts = vec!["cancel my subscription"; 5];
        texts.extend(["refund my payment"; 5]);
        texts.push("cancel subscription and refund payment");
        let groups = run(&texts);
        assert_eq!(groups[0].members.len() + groups[1].members.len(), 11);
        assert!(groups[0].members.len() <= 6 && groups[1].members.len() <= 6);
    }
}
