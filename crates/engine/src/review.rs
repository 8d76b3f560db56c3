//! Review: what people do to conversations — labels, flags, debug logging,
//! share links and bulk actions. Every change goes to the store first; the
//! index follows within the refresh interval.

use crate::failpoints::Failpoints;
use crate::query::trace::{TraceGroup, group_traces};
use crate::query::{QueryError, SearchRequest, SearchService};
use crate::settings::ReviewConfig;
use crate::store::bulk::{self, BulkAction, BulkChange};
use crate::store::review::{Reveal, share};
use crate::store::{ConversationRecord, MessageRecord, Store, StoreError, read};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use convlog_core::{Clock, Micros, normalize_label};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why a review action failed.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("invalid parameter `{name}`: {reason}")]
    Invalid { name: String, reason: String },
}

fn invalid(name: &str, reason: impl Into<String>) -> ReviewError {
    ReviewError::Invalid {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// A new share link.
#[derive(Debug, Clone)]
pub struct NewShare {
    pub token: String,
    pub expires_at: Micros,
}

/// A conversation opened through a share link: no history, and of the
/// reviewers' work only what the link reveals.
#[derive(Debug, Clone)]
pub struct SharedConversation {
    pub record: ConversationRecord,
    pub messages: Vec<MessageRecord>,
    pub reveal: Reveal,
}

/// Which conversations a bulk action changes.
#[derive(Debug, Clone)]
pub enum BulkTarget {
    /// Every conversation the search filters match.
    Matching(SearchRequest),
    /// These conversations (those of other bots, or gone, are not matched).
    Ids(Vec<u64>),
}

/// What a bulk action did (or would do, on a dry run).
#[derive(Debug, Clone, Copy)]
pub struct BulkOutcome {
    /// Conversations matching the filter.
    pub matched: u64,
    /// Conversations actually changed (0 on a dry run).
    pub changed: u64,
    pub dry_run: bool,
    /// The recorded action (to follow or undo); `None` on a dry run.
    pub action: Option<u64>,
}

/// Where a recorded bulk action is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkState {
    Running,
    Done,
    /// Stopped part-way (the server stopped): the chunks done stay, and can be undone.
    Interrupted,
    Undone,
}

impl BulkState {
    /// Its name in the API.
    pub fn name(self) -> &'static str {
        match self {
            BulkState::Running => "running",
            BulkState::Done => "done",
            BulkState::Interrupted => "interrupted",
            BulkState::Undone => "undone",
        }
    }
}

/// Review actions over the store.
#[derive(Clone)]
pub struct ReviewService {
    store: Store,
    search: SearchService,
    clock: Clock,
    config: ReviewConfig,
    /// Bulk actions and undos take turns, so an undo never meets a half-done action.
    bulk_turn: Arc<tokio::sync::Mutex<()>>,
    /// The action being applied now, if any.
    bulk_running: Arc<Mutex<Option<u64>>>,
    failpoints: Failpoints,
}

/// The hash under which a share token is stored.
fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl ReviewService {
    /// A service writing to `store`.
    pub fn new(
        store: Store,
        search: SearchService,
        clock: Clock,
        config: ReviewConfig,
    ) -> ReviewService {
        ReviewService {
            store,
            search,
            clock,
            config,
            bulk_turn: Arc::default(),
            bulk_running: Arc::default(),
            failpoints: Failpoints::from_env(),
        }
    }

    async fn conversation(&self, bot: &str, id: u64) -> Result<ConversationRecord, ReviewError> {
        let bot = bot.to_string();
        Ok(self
            .store
            .read_async(move |conn| read::conversation(conn, &bot, id))
            .await?)
    }

    /// Adds a label; returns the updated conversation.
    pub async fn add_label(
        &self,
        bot: &str,
        id: u64,
        label: &str,
    ) -> Result<ConversationRecord, ReviewError> {
        let label = normalize_label(label).map_err(|reason| invalid("label", reason))?;
        let (owner, now, max) = (bot.to_string(), self.clock.now(), self.config.max_labels);
        self.store
            .write(move |ctx| ctx.add_label(&owner, id, &label, now, max))
            .await?;
        self.conversation(bot, id).await
    }

    /// Removes a label; returns the updated conversation.
    pub async fn remove_label(
        &self,
        bot: &str,
        id: u64,
        label: &str,
    ) -> Result<ConversationRecord, ReviewError> {
        let label = normalize_label(label).map_err(|reason| invalid("label", reason))?;
        let owner = bot.to_string();
        self.store
            .write(move |ctx| ctx.remove_label(&owner, id, &label))
            .await?;
        self.conversation(bot, id).await
    }

    /// Flags (with an optional note) or unflags.
    pub async fn set_flag(
        &self,
        bot: &str,
        id: u64,
        flagged: bool,
        note: Option<String>,
    ) -> Result<ConversationRecord, ReviewError> {
        if let Some(note) = &note
            && note.chars().count() > 4096
        {
            return Err(invalid("note", "at most 4096 characters"));
        }
        let (owner, now) = (bot.to_string(), self.clock.now());
        self.store
            .write(move |ctx| {
                let flag = flagged.then_some((now, note.as_deref()));
                ctx.set_flag(&owner, id, flag)
            })
            .await?;
        self.conversation(bot, id).await
    }

    /// Turns debug logging on or off.
    pub async fn set_debug(
        &self,
        bot: &str,
        id: u64,
        on: bool,
    ) -> Result<ConversationRecord, ReviewError> {
        let owner = bot.to_string();
        self.store
            .write(move |ctx| ctx.set_debug(&owner, id, on))
            .await?;
        self.conversation(bot, id).await
    }

    /// Conversations with debug logging on.
    pub async fn debug_list(&self, bot: &str) -> Result<Vec<ConversationRecord>, ReviewError> {
        let bot = bot.to_string();
        Ok(self
            .store
            .read_async(move |conn| {
                let ids = crate::store::review::debug_conversations(conn, &bot)?;
                read::conversations(conn, &bot, &ids)
            })
            .await?)
    }

    /// The trace of a conversation grouped by user input, optionally only the input `message_id`.
    pub async fn trace(
        &self,
        bot: &str,
        id: u64,
        message_id: Option<String>,
    ) -> Result<(ConversationRecord, Vec<TraceGroup>), ReviewError> {
        let bot = bot.to_string();
        let (record, mut groups) = self
            .store
            .read_async(move |conn| {
                let record = read::conversation(conn, &bot, id)?;
                let messages = read::messages(conn, id)?;
                let traces = read::traces(conn, id)?;
                Ok((record, group_traces(&messages, traces)))
            })
            .await?;
        if let Some(message_id) = message_id {
            groups.retain(|g| g.input.as_ref().is_some_and(|m| m.id == message_id));
            if groups.is_empty() {
                return Err(ReviewError::Store(StoreError::NotFound));
            }
        }
        Ok((record, groups))
    }

    /// Creates a share link for one conversation, showing the transcript and
    /// what `include` names of the review (see [`Reveal::NAMES`]).
    pub async fn create_share(
        &self,
        bot: &str,
        id: u64,
        ttl: Option<&str>,
        include: &[String],
    ) -> Result<NewShare, ReviewError> {
        let reveal = Reveal::parse(include.iter().map(String::as_str)).map_err(|name| {
            invalid(
                "include",
                format!("{name:?} is not one of {}", Reveal::NAMES.join(", ")),
            )
        })?;
        let ttl = match ttl {
            None => self.config.share_ttl,
            // Exactly `<number><unit>`, as the API description's pattern says.
            Some(text) if !text.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                return Err(invalid(
                    "ttl",
                    format!("{text:?} is not like 7d, 12h or 30m"),
                ));
            }
            Some(text) => {
                convlog_core::parse_duration(text).map_err(|reason| invalid("ttl", reason))?
            }
        };
        if ttl.is_zero() || ttl > self.config.share_max_ttl {
            return Err(invalid(
                "ttl",
                format!(
                    "must be more than 0 and at most {}s",
                    self.config.share_max_ttl.as_secs()
                ),
            ));
        }
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|err| StoreError::Unavailable(err.to_string()))?;
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let now = self.clock.now();
        let expires_at = now + micros(ttl);
        let (owner, hash) = (bot.to_string(), token_hash(&token));
        self.store
            .write(move |ctx| ctx.create_share(&owner, id, &hash, now, expires_at, reveal))
            .await?;
        Ok(NewShare { token, expires_at })
    }

    /// The conversation behind a live share token; `NotFound` for anything else.
    pub async fn open_share(&self, token: &str) -> Result<SharedConversation, ReviewError> {
        let hash = token_hash(token);
        let now = self.clock.now();
        Ok(self
            .store
            .read_async(move |conn| {
                let share = share(conn, &hash)?.ok_or(StoreError::NotFound)?;
                if share.revoked_at.is_some() || share.expires_at <= now {
                    return Err(StoreError::NotFound);
                }
                let record = read::conversation(conn, &share.bot_id, share.conversation_id)?;
                let messages = read::messages(conn, share.conversation_id)?;
                Ok(SharedConversation {
                    record,
                    messages,
                    reveal: share.reveal,
                })
            })
            .await?)
    }

    /// Revokes a share token of `bot`.
    pub async fn revoke_share(&self, bot: &str, token: &str) -> Result<(), ReviewError> {
        let (owner, hash, now) = (bot.to_string(), token_hash(token), self.clock.now());
        self.store
            .write(move |ctx| ctx.revoke_share(&owner, &hash, now))
            .await?;
        Ok(())
    }

    /// Applies `change` to the target's conversations (or counts them on a
    /// dry run), in chunks, recording the action so it can be followed and undone.
    pub async fn bulk(
        &self,
        bot: &str,
        target: BulkTarget,
        change: BulkChange,
        dry_run: bool,
    ) -> Result<BulkOutcome, ReviewError> {
        let mut change = change;
        for label in change
            .add_labels
            .iter_mut()
            .chain(change.remove_labels.iter_mut())
        {
            *label = normalize_label(label).map_err(|reason| invalid("labels", reason))?;
        }
        if change.add_labels.is_empty() && change.remove_labels.is_empty() && change.flag.is_none()
        {
            return Err(invalid("body", "name add_labels, remove_labels or flag"));
        }
        let now = self.clock.now();
        let owner = bot.to_string();
        let ids = match target {
            BulkTarget::Matching(request) => {
                self.search
                    .matching_ids(owner.clone(), request, now)
                    .await?
            }
            BulkTarget::Ids(ids) => {
                let owner = owner.clone();
                self.store
                    .read_async(move |conn| bulk::owned(conn, &owner, &ids))
                    .await?
            }
        };
        let matched = ids.len() as u64;
        // Refused whole before anything changes, dry run or not.
        let max = self.config.max_labels;
        let (ids, change) = self
            .store
            .read_async(move |conn| {
                match bulk::over_label_limit(conn, &ids, &change, max)? {
                    Some((id, has)) => Err(StoreError::Limit {
                        name: "label",
                        reason: format!(
                            "conversation {} has {has} labels already; at most {max} are kept (review.max_labels)",
                            convlog_core::ConversationId(id)
                        ),
                    }),
                    None => Ok((ids, change)),
                }
            })
            .await?;
        if dry_run {
            return Ok(BulkOutcome {
                matched,
                changed: 0,
                dry_run,
                action: None,
            });
        }
        // On its own task: a client that goes away doesn't stop it half-way.
        let service = self.clone();
        let applied = tokio::spawn(async move {
            let _turn = service.bulk_turn.lock().await;
            let action = {
                let owner = owner.clone();
                service
                    .store
                    .write(move |ctx| ctx.begin_bulk(&owner, &change, matched, now))
                    .await?
            };
            *service.bulk_running.lock().expect("not poisoned") = Some(action);
            let running = RunningAction(&service.bulk_running);
            let mut changed = 0;
            let mut chunks = ids.chunks(service.config.bulk_chunk).peekable();
            loop {
                let chunk = chunks.next().unwrap_or_default().to_vec();
                let last = chunks.peek().is_none();
                let (owner, clock) = (owner.clone(), service.clock);
                changed += service
                    .store
                    .write(move |ctx| ctx.bulk_chunk(action, &owner, &chunk, clock.now(), last))
                    .await?;
                service.failpoints.hit("bulk.after_chunk");
                if last {
                    break;
                }
            }
            drop(running);
            Ok::<_, ReviewError>(BulkOutcome {
                matched,
                changed,
                dry_run,
                action: Some(action),
            })
        });
        applied
            .await
            .map_err(|err| ReviewError::Query(QueryError::Task(err.to_string())))?
    }

    /// The bot's recorded bulk actions, newest first, with where each is.
    pub async fn bulk_actions(
        &self,
        bot: &str,
    ) -> Result<Vec<(BulkAction, BulkState)>, ReviewError> {
        let owner = bot.to_string();
        let actions = self
            .store
            .read_async(move |conn| bulk::actions(conn, &owner))
            .await?;
        Ok(actions
            .into_iter()
            .map(|action| {
                let state = self.bulk_state(&action);
                (action, state)
            })
            .collect())
    }

    fn bulk_state(&self, action: &BulkAction) -> BulkState {
        let running = *self.bulk_running.lock().expect("not poisoned");
        match action {
            BulkAction {
                undone_at: Some(_), ..
            } => BulkState::Undone,
            BulkAction {
                finished_at: Some(_),
                ..
            } => BulkState::Done,
            _ if running == Some(action.id) => BulkState::Running,
            _ => BulkState::Interrupted,
        }
    }

    /// Undoes a recorded bulk action of `bot` (see `WriteCtx::undo_bulk_chunk`
    /// for what is put back); waits for a running one to finish first.
    pub async fn undo_bulk(
        &self,
        bot: &str,
        id: u64,
    ) -> Result<(BulkAction, BulkState), ReviewError> {
        let service = self.clone();
        let owner = bot.to_string();
        let undone = tokio::spawn(async move {
            let _turn = service.bulk_turn.lock().await;
            let read = |owner: String| {
                service
                    .store
                    .read_async(move |conn| bulk::action(conn, &owner, id))
            };
            let action = read(owner.clone()).await?;
            if action.undone_at.is_some() {
                return Err(ReviewError::Store(StoreError::Conflict(format!(
                    "bulk action {id} was undone already"
                ))));
            }
            let mut after = 0;
            loop {
                let (action, clock) = (action.clone(), service.clock);
                let chunk = service.config.bulk_chunk;
                let last = service
                    .store
                    .write(move |ctx| ctx.undo_bulk_chunk(&action, after, chunk, clock.now()))
                    .await?;
                match last {
                    Some(last) => after = last,
                    None => break,
                }
            }
            let action = read(owner).await?;
            let state = service.bulk_state(&action);
            Ok((action, state))
        });
        undone
            .await
            .map_err(|err| ReviewError::Query(QueryError::Task(err.to_string())))?
    }
}

/// Clears the running action when the work ends, however it ends.
struct RunningAction<'a>(&'a Mutex<Option<u64>>);

impl Drop for RunningAction<'_> {
    fn drop(&mut self) {
        *self.0.lock().expect("not poisoned") = None;
    }
}

fn micros(duration: Duration) -> Micros {
    duration.as_micros().min(i64::MAX as u128) as Micros
}
