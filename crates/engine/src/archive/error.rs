//! What can go wrong in the archive, sorted by what the caller can do about it:
//! retry later, fix the configuration, or look at a damaged object.

use crate::store::StoreError;

/// What can go wrong in the archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The store (SQLite) failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An object is there but is not what the manifest says: another checksum,
    /// not Parquet, a column missing or unreadable. Retrying can't help.
    #[error("corrupt archive object {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// The object store failed in a way that may pass (network, throttling, a
    /// server error), or the index has not caught up yet: retry later.
    #[error("archive unavailable, retry later: {0}")]
    Unavailable(String),
    /// An object the manifest lists is missing from the object store.
    #[error("archive object {key} not found")]
    NotFound { key: String },
    /// The archive can't be used as configured: its URL, credentials or permissions.
    #[error("archive misconfigured: {0}")]
    Misconfigured(String),
    /// Encoding a partition failed: a bug, not the data or the object store.
    #[error("encoding an archive object: {0}")]
    Encode(String),
    /// Someone asked the work to stop.
    #[error("cancelled")]
    Cancelled,
}

impl ArchiveError {
    /// The object at `key` is damaged.
    pub fn corrupt(key: &str, reason: impl std::fmt::Display) -> ArchiveError {
        ArchiveError::Corrupt {
            key: key.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ArchiveError::Unavailable(_) => true,
            ArchiveError::Store(err) => err.is_unavailable(),
            _ => false,
        }
    }

    /// What the object store said when `doing` (e.g. "reading k") failed at `key`.
    pub(super) fn object_store(key: &str, doing: &str, err: object_store::Error) -> ArchiveError {
        use object_store::Error as E;
        match err {
            E::NotFound { .. } => ArchiveError::NotFound {
                key: key.to_string(),
            },
            E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::UnknownConfigurationKey { .. }
            | E::InvalidPath { .. }
            | E::NotSupported { .. }
            | E::NotImplemented { .. } => ArchiveError::Misconfigured(format!("{doing}: {err}")),
            // The local filesystem reports a permission problem as a generic error.
            err if denied_by_the_filesystem(&err) => {
                ArchiveError::Misconfigured(format!("{doing}: {err}"))
            }
            err => ArchiveError::Unavailable(format!("{doing}: {err}")),
        }
    }
}

fn denied_by_the_filesystem(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::PermissionDenied
        {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(text: &str) -> Box<dyn std::error::Error + Send + Sync> {
        text.into()
    }

    #[test]
    fn object_store_errors_are_sorted_by_what_can_be_done() {
        let not_found = object_store::Error::NotFound {
            path: "k".into(),
            source: boxed("gone"),
        };
        assert!(matches!(
            ArchiveError::object_store("k", "reading k", not_found),
            ArchiveError::NotFound { key } if key == "k"
        ));
        let denied = object_store::Error::PermissionDenied {
            path: "k".into(),
            source: boxed("403"),
        };
        assert!(matches!(
            ArchiveError::object_store("k", "reading k", denied),
            ArchiveError::Misconfigured(_)
        ));
        let local = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::PermissionDenied)),
        };
        assert!(matches!(
            ArchiveError::object_store("k", "writing k", local),
            ArchiveError::Misconfigured(_)
        ));
        let flaky = object_store::Error::Generic {
            store: "S3",
            source: boxed("connection reset"),
        };
        let err = ArchiveError::object_store("k", "reading k", flaky);
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("reading k"), "{err}");
        assert!(!ArchiveError::corrupt("k", "bad").is_retryable());
    }
}
