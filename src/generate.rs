//! placeholder until the generator lands
#[derive(Debug, Clone)]
pub struct GenConfig { pub seed: u64, pub conversations: usize, pub bots: Vec<String>, pub end: chrono::DateTime<chrono::Utc>, pub span_days: u32, pub explicit_session_share: f64 }
impl GenConfig { pub fn new(seed: u64, conversations: usize, end: chrono::DateTime<chrono::Utc>) -> Self { GenConfig { seed, conversations, bots: vec!["demo".into()], end, span_days: 30, explicit_session_share: 0.05 } } }
pub fn write_ndjson(_cfg: &GenConfig, _out: impl std::io::Write) -> std::io::Result<u64> { Ok(0) }
