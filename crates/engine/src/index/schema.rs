//! Builds the tantivy schema from the declaration in `index-schema/schema.toml`
//! (and from the declarations of older versions this binary still serves).

use convlog_querylang::analysis;
use serde::Deserialize;
use tantivy::Index;
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{
    LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer, Token, TokenStream, Tokenizer,
};

/// The declaration, embedded so the binary and its schema can't drift apart.
pub const SCHEMA_TOML: &str = include_str!("../../../../index-schema/schema.toml");

/// Declarations of older versions, as they were released: an index built
/// with one of them is served (searched, and kept up to date with new
/// messages) while a reindex builds the current schema beside it, so an
/// upgrade costs no downtime. An index of any other version is rebuilt in place.
const OLDER: &[&str] = &[include_str!("../../../../index-schema/v5.toml")];

/// A problem with the schema declaration.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("index-schema: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("index-schema field `{field}`: {reason}")]
    Field { field: String, reason: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchema {
    version: u32,
    tokenizer: RawTokenizer,
    field: Vec<RawField>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenizer {
    name: String,
    /// Only for `words`: longer words are dropped.
    max_token_len: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    indexed: bool,
    #[serde(default)]
    fast: bool,
}

/// How the `text` field was analysed: what a query word must become to match it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextAnalysis {
    /// Schema 6 on (tokenizer `analysed`): words folded, stemmed in their
    /// message's language and tagged with it; unspaced scripts as bigrams
    /// (see [`Analysed`]); with the fields that go with it.
    Languages(LanguageFields),
    /// Schema 5 (tokenizer `words`): runs of letters and digits, lowercased,
    /// longer than `max_token_len` bytes dropped (see [`plain_words`]).
    PlainWords { max_token_len: usize },
}

/// The schema with its version and tokenizer.
#[derive(Clone)]
pub struct IndexSchema {
    pub version: u32,
    pub schema: Schema,
    pub fields: Fields,
    pub analysis: TextAnalysis,
    tokenizer_name: String,
}

impl IndexSchema {
    /// Parses and builds the embedded declaration.
    pub fn load() -> Result<IndexSchema, SchemaError> {
        IndexSchema::parse(SCHEMA_TOML)
    }

    /// The declaration of an older `version` this binary still serves, if it is one.
    pub fn older(version: u32) -> Option<IndexSchema> {
        OLDER
            .iter()
            .map(|text| IndexSchema::parse(text).expect("older schema declarations build"))
            .find(|schema| schema.version == version)
    }

    /// Parses and builds a declaration.
    pub fn parse(text: &str) -> Result<IndexSchema, SchemaError> {
        let raw: RawSchema = toml::from_str(text)?;
        let mut builder = Schema::builder();
        for field in &raw.field {
            let invalid = |reason: &str| SchemaError::Field {
                field: field.name.clone(),
                reason: reason.to_string(),
            };
            match field.kind.as_str() {
                "str" => {
                    let mut options = TextOptions::default();
                    if field.indexed {
                        options = options.set_indexing_options(
                            TextFieldIndexing::default()
                                .set_tokenizer("raw")
                                .set_index_option(IndexRecordOption::Basic),
                        );
                    }
                    if field.fast {
                        options = options.set_fast("raw");
                    }
                    builder.add_text_field(&field.name, options);
                }
                "text" => {
                    if field.fast {
                        return Err(invalid("text fields can't be fast"));
                    }
                    let options = TextOptions::default().set_indexing_options(
                        TextFieldIndexing::default()
                            .set_tokenizer(&raw.tokenizer.name)
                            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
                    );
                    builder.add_text_field(&field.name, options);
                }
                "u64" | "i64" => {
                    let mut options = NumericOptions::default();
                    if field.indexed {
                        options = options.set_indexed();
                    }
                    if field.fast {
                        options = options.set_fast();
                    }
                    if field.kind == "u64" {
                        builder.add_u64_field(&field.name, options);
                    } else {
                        builder.add_i64_field(&field.name, options);
                    }
                }
                other => return Err(invalid(&format!("unknown type {other:?}"))),
            }
        }
        let schema = builder.build();
        let fields = Fields::from_schema(&schema)?;
        let tokenizer = &raw.tokenizer;
        let analysis = match (tokenizer.name.as_str(), tokenizer.max_token_len) {
            ("analysed", None) => match (schema.get_field("words"), schema.get_field("lang")) {
                (Ok(words), Ok(lang)) => TextAnalysis::Languages(LanguageFields { words, lang }),
                _ => {
                    return Err(SchemaError::Field {
                        field: "words".into(),
                        reason: "the analysed tokenizer needs the words and lang fields".into(),
                    });
                }
            },
            ("words", Some(max_token_len)) => TextAnalysis::PlainWords { max_token_len },
            (name, _) => {
                return Err(SchemaError::Field {
                    field: "tokenizer".into(),
                    reason: format!(
                        "{name:?}: expected \"analysed\", or \"words\" with max_token_len"
                    ),
                });
            }
        };
        Ok(IndexSchema {
            version: raw.version,
            schema,
            fields,
            analysis,
            tokenizer_name: raw.tokenizer.name,
        })
    }

    /// Registers the tokenizer the text fields use on `index`.
    pub fn register_tokenizer(&self, index: &Index) {
        match self.analysis {
            TextAnalysis::Languages(_) => {
                index.tokenizers().register(&self.tokenizer_name, Analysed)
            }
            TextAnalysis::PlainWords { max_token_len } => index
                .tokenizers()
                .register(&self.tokenizer_name, plain_words_analyzer(max_token_len)),
        }
    }
}

/// The tokenizer of schema 5's `text` field.
fn plain_words_analyzer(max_token_len: usize) -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(max_token_len + 1))
        .filter(LowerCaser)
        .build()
}

/// The words of `text` as schema 5 indexed them: what a query word becomes
/// in an index of that version.
pub fn plain_words(text: &str, max_token_len: usize) -> Vec<String> {
    let mut analyzer = plain_words_analyzer(max_token_len);
    let mut stream = analyzer.token_stream(text);
    let mut words = Vec::new();
    while stream.advance() {
        words.push(stream.token().text.clone());
    }
    words
}

/// The tokenizer of the `text` field: text tagged with its language
/// (`analysis::tagged`) becomes the tokens of `analysis::analyse`, a word's
/// written stem at the same position as its stem. Analysis runs inside the
/// index writer's threads, and nothing but the tagged text crosses to them.
#[derive(Clone, Default)]
pub struct Analysed;

/// The tokens of one text, in order.
pub struct AnalysedTokens {
    tokens: Vec<Token>,
    next: usize,
}

impl Tokenizer for Analysed {
    type TokenStream<'a> = AnalysedTokens;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> AnalysedTokens {
        let (lang, body) = analysis::split_tagged(text, "und");
        let shift = text.len() - body.len();
        let mut tokens = Vec::new();
        for token in analysis::analyse(lang, body) {
            let at = |text: String| Token {
                offset_from: shift + token.start,
                offset_to: shift + token.end,
                position: token.position,
                text,
                position_length: 1,
            };
            if let Some(written) = token.written {
                tokens.push(at(written));
            }
            tokens.push(at(token.text));
        }
        AnalysedTokens { tokens, next: 0 }
    }
}

impl TokenStream for AnalysedTokens {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

/// Every field the code uses, resolved once; others (the filter table's) by name.
#[derive(Debug, Clone)]
pub struct Fields {
    schema: Schema,
    pub bot: Field,
    pub conv_id: Field,
    pub msg_seq: Field,
    pub channel: Field,
    pub tag: Field,
    pub label: Field,
    pub flagged: Field,
    pub flow: Field,
    pub flow_step: Field,
    pub dropoff: Field,
    pub dropoff_step: Field,
    pub node: Field,
    pub prompt_node: Field,
    pub role: Field,
    pub ts: Field,
    pub first_ts: Field,
    pub last_ts: Field,
    pub text: Field,
}

/// The fields that go with [`TextAnalysis::Languages`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LanguageFields {
    /// The folded, unstemmed words of a message: what prefixes and typos look up.
    pub words: Field,
    /// The language its text was analysed in.
    pub lang: Field,
}

impl Fields {
    /// Resolves every field, failing on the first one the schema lacks.
    pub fn from_schema(schema: &Schema) -> Result<Fields, SchemaError> {
        let get = |name: &str| {
            schema.get_field(name).map_err(|_| SchemaError::Field {
                field: name.to_string(),
                reason: "missing from index-schema/schema.toml".into(),
            })
        };
        Ok(Fields {
            schema: schema.clone(),
            bot: get("bot")?,
            conv_id: get("conv_id")?,
            msg_seq: get("msg_seq")?,
            channel: get("channel")?,
            tag: get("tag")?,
            label: get("label")?,
            flagged: get("flagged")?,
            flow: get("flow")?,
            flow_step: get("flow_step")?,
            dropoff: get("dropoff")?,
            dropoff_step: get("dropoff_step")?,
            node: get("node")?,
            prompt_node: get("prompt_node")?,
            role: get("role")?,
            ts: get("ts")?,
            first_ts: get("first_ts")?,
            last_ts: get("last_ts")?,
            text: get("text")?,
        })
    }

    /// The field named `name`. Panics when the schema lacks it: the names
    /// come from the filter table, whose test checks them against the schema.
    pub fn get(&self, name: &str) -> Field {
        self.schema
            .get_field(name)
            .unwrap_or_else(|_| panic!("field `{name}` is missing from index-schema/schema.toml"))
    }
}

/// Joins a flow and a step into one `flow_step` / `dropoff_step` value.
pub fn flow_step(flow: &str, step: &str) -> String {
    format!("{flow}\u{1f}{step}")
}
/// The `dropoff` value every conversation with a drop-off carries.
pub const ANY_DROPOFF: &str = "\u{0}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_schema_builds_and_resolves_every_field() {
        let schema = IndexSchema::load().unwrap();
        assert!(schema.version >= 1);
    }

    #[test]
    fn the_current_schema_analyses_languages_and_schema_5_plain_words() {
        let current = IndexSchema::load().unwrap();
        assert!(matches!(current.analysis, TextAnalysis::Languages(_)));
        let v5 = IndexSchema::older(5).expect("schema 5 is served");
        assert_eq!(v5.analysis, TextAnalysis::PlainWords { max_token_len: 64 });
        assert!(IndexSchema::older(current.version).is_none());
        assert!(IndexSchema::older(1).is_none());
        // Every field of schema 5 keeps its id in the current schema: a query
        // built for the current fields reads a schema 5 index the same way.
        for (field, entry) in v5.schema.fields() {
            assert_eq!(current.schema.get_field(entry.name()).unwrap(), field);
        }
    }

    /// The schema a real schema 5 index records in its `meta.json` (written by
    /// the release that had it): the declaration kept must still build it, or
    /// opening such an index would take it for another schema and rebuild it
    /// in place.
    #[test]
    fn schema_5_builds_what_its_release_wrote() {
        let released: serde_json::Value =
            serde_json::from_str(include_str!("../../../../index-schema/v5.meta-schema.json"))
                .unwrap();
        let built = serde_json::to_value(IndexSchema::older(5).unwrap().schema).unwrap();
        assert_eq!(built, released);
    }

    #[test]
    fn plain_words_are_schema_5_tokens() {
        assert_eq!(
            plain_words("Refund's ÉTÉ 注文がまだ", 64),
            ["refund", "s", "été", "注文がまだ"]
        );
        assert_eq!(plain_words(&"a".repeat(65), 64), Vec::<String>::new());
    }

    #[test]
    fn missing_field_is_named() {
        let text = SCHEMA_TOML.replace("name = \"prompt_node\"", "name = \"prompt_nodes\"");
        let err = IndexSchema::parse(&text).err().unwrap();
        assert!(err.to_string().contains("prompt_node"), "{err}");
    }
}
