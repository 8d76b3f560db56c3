//! Where archive objects go: `object_store` over the local filesystem (`file://`)
//! or S3 and S3-compatible servers (`s3://bucket/prefix`).

use super::ArchiveError;
use crate::settings::S3Config;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart,
};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Size of each part of a multipart upload.
const PART_SIZE: usize = 8 << 20;

/// What writing an object found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The object was uploaded now.
    Uploaded,
    /// An identical object was there already (a resumed run).
    AlreadyThere,
}

/// An object found where one is to be written.
enum Existing {
    Absent,
    Same,
    Different,
}

/// The archive's object store.
#[derive(Clone)]
pub struct Target {
    store: Arc<dyn ObjectStore>,
    url: String,
    multipart_threshold: usize,
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Target {
    /// Opens the store an archive URL names.
    pub fn open(
        url: &str,
        s3: &S3Config,
        multipart_threshold: usize,
    ) -> Result<Target, ArchiveError> {
        let misconfigured = ArchiveError::Misconfigured;
        let store: Arc<dyn ObjectStore> = if let Some(path) = url.strip_prefix("file://") {
            std::fs::create_dir_all(path).map_err(|err| {
                misconfigured(format!("creating the archive directory {path}: {err}"))
            })?;
            Arc::new(LocalFileSystem::new_with_prefix(path).map_err(|err| {
                misconfigured(format!("opening the archive directory {path}: {err}"))
            })?)
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(misconfigured(format!("{url}: no bucket")));
            }
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_virtual_hosted_style_request(false);
            if !s3.endpoint.is_empty() {
                builder = builder.with_endpoint(&s3.endpoint);
            }
            if !s3.region.is_empty() {
                builder = builder.with_region(&s3.region);
            }
            if !s3.access_key_id.is_empty() {
                builder = builder.with_access_key_id(&s3.access_key_id);
            }
            if !s3.secret_access_key.is_empty() {
                builder = builder.with_secret_access_key(&s3.secret_access_key);
            }
            if s3.allow_http {
                builder = builder.with_allow_http(true);
            }
            let store = builder
                .build()
                .map_err(|err| misconfigured(format!("configuring S3 for {url}: {err}")))?;
            let prefix = prefix.trim_matches('/');
            if prefix.is_empty() {
                Arc::new(store)
            } else {
                Arc::new(PrefixStore::new(store, prefix))
            }
        } else {
            return Err(misconfigured(format!("{url}: expected file://… or s3://…")));
        };
        Ok(Target {
            store,
            url: url.to_string(),
            multipart_threshold,
        })
    }

    /// The URL this target was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Writes `bytes` at `key` unless an identical object is there.
    ///
    /// Keys are deterministic per run and unknown to the manifest until the run
    /// records them, so a different object at the key can only be a leftover of
    /// this run's own interrupted attempt: it is replaced. `PutMode::Create`
    /// guards the small uploads where the server honours it; the read-back
    /// comparison is what correctness rests on (some servers ignore it).
    pub async fn write(
        &self,
        key: &str,
        bytes: Bytes,
        sha256: &str,
    ) -> Result<Written, ArchiveError> {
        let path = Path::from(key);
        let exists = match self.existing(&path, sha256).await? {
            Existing::Same => return Ok(Written::AlreadyThere),
            Existing::Different => true,
            Existing::Absent => false,
        };
        if bytes.len() > self.multipart_threshold {
            let upload = self.store.put_multipart(&path).await.map_err(|err| {
                ArchiveError::object_store(key, &format!("starting the upload of {key}"), err)
            })?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            writer.put(bytes);
            writer
                .finish()
                .await
                .map_err(|err| ArchiveError::object_store(key, &format!("uploading {key}"), err))?;
        } else {
            let options = PutOptions {
                mode: if exists {
                    PutMode::Overwrite
                } else {
                    PutMode::Create
                },
                ..PutOptions::default()
            };
            match self
                .store
                .put_opts(&path, PutPayload::from(bytes), options)
                .await
            {
                Ok(_) => {}
                // Someone wrote it between our check and the put: it must be identical.
                Err(object_store::Error::AlreadyExists { .. }) => {
                    return match self.existing(&path, sha256).await? {
                        Existing::Same => Ok(Written::AlreadyThere),
                        // Another writer at work: this attempt fails, a later one compares again.
                        _ => Err(ArchiveError::Unavailable(format!(
                            "{key} appeared with other content while writing it"
                        ))),
                    };
                }
                Err(err) => {
                    return Err(ArchiveError::object_store(
                        key,
                        &format!("uploading {key}"),
                        err,
                    ));
                }
            }
        }
        Ok(Written::Uploaded)
    }

    /// What is at `path` compared with an object of checksum `sha256`.
    async fn existing(&self, path: &Path, sha256: &str) -> Result<Existing, ArchiveError> {
        match self.store.head(path).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(Existing::Absent),
            Err(err) => {
                return Err(ArchiveError::object_store(
                    path.as_ref(),
                    &format!("checking {path}"),
                    err,
                ));
            }
        }
        Ok(match self.get(path.as_ref()).await {
            Ok(bytes) if sha256_hex(&bytes) == sha256 => Existing::Same,
            // Unreadable (e.g. removed meanwhile) or other bytes: written again.
            _ => Existing::Different,
        })
    }

    /// The whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes, ArchiveError> {
        let path = Path::from(key);
        let failed = |err| ArchiveError::object_store(key, &format!("reading {key}"), err);
        let result = self.store.get(&path).await.map_err(failed)?;
        result.bytes().await.map_err(failed)
    }

    /// Removes an object (absent is fine).
    pub async fn delete(&self, key: &str) -> Result<(), ArchiveError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(ArchiveError::object_store(
                key,
                &format!("deleting {key}"),
                err,
            )),
        }
    }

    /// Every object under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, ArchiveError> {
        self.store
            .list(Some(&Path::from(prefix)))
            .try_collect()
            .await
            .map_err(|err| ArchiveError::object_store(prefix, &format!("listing {prefix}"), err))
    }
}
