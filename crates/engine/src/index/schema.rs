//! Builds the tantivy schema from the declaration in `index-schema/schema.toml`.

use convlog_querylang::analysis;
use serde::Deserialize;
use tantivy::Index;
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// The declaration, embedded so the binary and its schema can't drift apart.
pub const SCHEMA_TOML: &str = include_str!("../../../../index-schema/schema.toml");

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

/// The schema with its version and tokenizer.
#[derive(Clone)]
pub struct IndexSchema {
    pub version: u32,
    pub schema: Schema,
    pub fields: Fields,
    tokenizer_name: String,
}

impl IndexSchema {
    /// Parses and builds the embedded declaration.
    pub fn load() -> Result<IndexSchema, SchemaError> {
        IndexSchema::parse(SCHEMA_TOML)
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
        Ok(IndexSchema {
            version: raw.version,
            schema,
            fields,
            tokenizer_name: raw.tokenizer.name,
        })
    }

    /// Registers the tokenizer the text fields use on `index`.
    pub fn register_tokenizer(&self, index: &Index) {
        index.tokenizers().register(&self.tokenizer_name, Analysed);
    }
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
    pub words: Field,
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
            words: get("words")?,
            lang: get("lang")?,
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
    fn missing_field_is_named() {
        let text = SCHEMA_TOML.replace("name = \"prompt_node\"", "name = \"prompt_nodes\"");
        let err = IndexSchema::parse(&text).err().unwrap();
        assert!(err.to_string().contains("prompt_node"), "{err}");
    }
}
