//! Where backups go: a local folder (`file:///path`) or an S3 bucket (`s3://bucket/prefix`,
//! settings from `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`; path-style requests, so S3-compatible servers work), through the
//! `object_store` crate.
//!
//! Layout under the URL: `wdo/v1/log/<batch>.wdob`, batches named so that their names sort in
//! the order they were written (`<milliseconds, 13 digits>-<host run>-<sequence>`), and
//! `wdo/v1/components/<sha256>.wasm`, each component once, and `wdo/v1/snapshots/<the last batch
//! it covers>/` (`compact.rs`).

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::sync::Arc;

pub struct BackupStore {
    inner: Arc<dyn ObjectStore>,
    root: StorePath,
    /// The URL it was opened from, for messages.
    pub url: String,
}

impl BackupStore {
    /// Opens the store a `--backup` URL names. Nothing is contacted yet.
    pub fn open(url: &str) -> Result<BackupStore, String> {
        let (inner, prefix): (Arc<dyn ObjectStore>, &str) = if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "--backup {url}: a file URL names an absolute folder, like file:///var/backups/wdo"
                ));
            }
            std::fs::create_dir_all(path).map_err(|e| format!("--backup {url}: cannot create {path}: {e}"))?;
            let local = object_store::local::LocalFileSystem::new_with_prefix(path)
                .map_err(|e| format!("--backup {url}: {e}"))?;
            (Arc::new(local), "")
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("--backup {url}: name a bucket, like s3://bucket/prefix"));
            }
            // A flush that fails is tried again at the next interval with whatever came since,
            // so a request retries little and the host learns soon that the store is away.
            let retry = object_store::RetryConfig {
                backoff: Default::default(),
                max_retries: 2,
                retry_timeout: std::time::Duration::from_secs(5),
            };
            let mut builder = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_virtual_hosted_style_request(false)
                .with_retry(retry)
                // The host's hyper and rustls, with its timeouts (`http.rs`).
                .with_http_connector(super::http::Connector);
            // A plain-HTTP endpoint (a local S3-compatible server) is allowed when named.
            if std::env::var("AWS_ENDPOINT_URL")
                .or_else(|_| std::env::var("AWS_ENDPOINT"))
                .is_ok_and(|e| e.starts_with("http://"))
            {
                builder = builder.with_allow_http(true);
            }
            let s3 = builder.build().map_err(|e| format!("--backup {url}: {e}"))?;
            (Arc::new(s3), prefix)
        } else {
            return Err(format!("--backup {url}: use file:///path or s3://bucket/prefix"));
        };
        let root = StorePath::from(format!("{}/wdo/v1", prefix.trim_matches('/')).trim_start_matches('/'));
        Ok(BackupStore { inner, root, url: url.to_string() })
    }

    fn path(&self, name: &str) -> StorePath {
        StorePath::from(format!("{}/{name}", self.root))
    }

    pub async fn put(&self, name: &str, bytes: Vec<u8>) -> object_store::Result<()> {
        self.inner.put(&self.path(name), PutPayload::from(bytes)).await.map(drop)
    }

    /// Whether something is stored under `name`.
    pub async fn exists(&self, name: &str) -> object_store::Result<bool> {
        match self.inner.head(&self.path(name)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn get(&self, name: &str) -> object_store::Result<Bytes> {
        self.inner.get(&self.path(name)).await?.bytes().await
    }

    /// The names (relative to the layout's root) under `folder`, sorted.
    pub async fn list(&self, folder: &str) -> object_store::Result<Vec<String>> {
        Ok(self.list_sized(folder).await?.into_iter().map(|(name, _)| name).collect())
    }

    /// The names under `folder` that sort after `offset` (a name under it), sorted: a store
    /// that can starts its listing there (S3's `start-after`).
    pub async fn list_after(&self, folder: &str, offset: &str) -> object_store::Result<Vec<String>> {
        let prefix = self.path(folder);
        let root = format!("{}/", self.root);
        let mut names: Vec<String> = self
            .inner
            .list_with_offset(Some(&prefix), &self.path(offset))
            .map_ok(|meta| meta.location.as_ref().strip_prefix(&root).unwrap_or("").to_string())
            .try_collect()
            .await?;
        // A store that cannot start there lists everything.
        names.retain(|name| name.as_str() > offset);
        names.sort();
        Ok(names)
    }

    /// The names under `folder` and their sizes, sorted by name.
    pub async fn list_sized(&self, folder: &str) -> object_store::Result<Vec<(String, u64)>> {
        let prefix = self.path(folder);
        let root = format!("{}/", self.root);
        let mut names: Vec<(String, u64)> = self
            .inner
            .list(Some(&prefix))
            .map_ok(|meta| (meta.location.as_ref().strip_prefix(&root).unwrap_or("").to_string(), meta.size))
            .try_collect()
            .await?;
        names.sort();
        Ok(names)
    }

    /// Removes what is stored under `name` (nothing there is not an error).
    pub async fn delete(&self, name: &str) -> object_store::Result<()> {
        match self.inner.delete(&self.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
