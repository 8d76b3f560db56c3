//! Auto-tagging: explainable rules that mark conversations that went wrong.
//!
//! [`config`] turns `[tagging]` of `config.toml` into rules, [`rules`]
//! evaluates them over one conversation (pure), and [`job`] runs them on a
//! dedicated rayon pool over the conversations that changed, over those whose
//! time-dependent rules fell due, and over everything on request.

pub mod config;
pub mod job;
pub mod rules;

pub use config::{RawTagging, TaggingConfig};
pub use job::Tagger;
