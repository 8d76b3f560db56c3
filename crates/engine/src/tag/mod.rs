//! Auto-tagging: explainable rules that mark conversations that went wrong.
//!
//! The files, lowest first (each uses only those before it):
//!
//! - [`rules`]: the pure cores, what each rule finds in one conversation;
//! - [`builtin`]: the registry of built-in rules (name, parameters with
//!   defaults and checks, time dependence, evaluation);
//! - [`config`]: `[tagging]` of `config.toml`, read and validated into rules
//!   through the registry;
//! - [`mod@evaluate`]: every configured rule over one conversation;
//! - [`job`]: runs them on a dedicated rayon pool over the conversations that
//!   changed, over those whose time-dependent rules fell due, and over
//!   everything on request.

pub mod builtin;
pub mod config;
pub mod evaluate;
pub mod job;
pub mod rules;

pub use config::{RawTagging, TaggingConfig};
pub use evaluate::{TagResult, evaluate};
pub use job::Tagger;
