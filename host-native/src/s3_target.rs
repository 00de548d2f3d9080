//! S3-compatible backup targets, the host side of `cairn_core::target::ArchiveTarget`,
//! through the `object_store` crate (AWS S3, MinIO, SeaweedFS, R2, ...).
//!
//! `--backup-target NAME=s3://BUCKET[/PREFIX][?endpoint=URL&region=R]`; credentials come
//! from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! and the other `AWS_*` settings `object_store` reads). An archive is written as one
//! multipart upload in parts of [`PART`] bytes with at most [`IN_FLIGHT`] parts uploading, so
//! a backup holds a bounded amount of memory whatever its size and never a full local copy.
//! Every call runs on the target's own small runtime: job threads block on it, and the
//! server's request runtime never waits on S3.

use cairn_core::target::ArchiveTarget;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, MultipartId, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// Bytes per uploaded part (S3's minimum is 5 MiB for all but the last).
pub const PART: usize = 8 << 20;
/// Parts uploading at once; the writer waits beyond that (memory: about `(IN_FLIGHT + 1) * PART`).
pub const IN_FLIGHT: usize = 2;

/// A configured target: where it is and a client for it.
pub struct S3Config {
    /// The name requests use (`"target": NAME`).
    pub name: String,
    /// `s3://bucket/prefix` (for listings and messages; no credentials in it).
    pub location: String,
    prefix: String,
    store: Arc<AmazonS3>,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("name", &self.name)
            .field("location", &self.location)
            .finish()
    }
}

impl S3Config {
    /// Parses `NAME=s3://bucket/prefix?endpoint=…&region=…` and builds its client (no request
    /// is made: a wrong endpoint or credentials show in the first job that uses it).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (name, url) = spec
            .split_once('=')
            .ok_or_else(|| format!("backup target {spec:?}: expected NAME=s3://bucket/prefix"))?;
        cairn_core::engine::validate_backup_name(name)
            .map_err(|e| format!("backup target name {name:?}: {e}"))?;
        if name == "local" {
            return Err("backup target name \"local\" is the data directory's backups/".into());
        }
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("backup target {name}: only s3:// URLs are supported"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(format!("backup target {name}: missing bucket in {url:?}"));
        }
        let prefix = prefix.trim_matches('/').to_string();
        // Fail a job within seconds when the store is unreachable instead of retrying for
        // minutes; a flaky request still gets retried a few times. (Client options first:
        // the URL's options below adjust them.)
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 3,
            retry_timeout: Duration::from_secs(20),
        };
        let client = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(60));
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(retry)
            .with_client_options(client);
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            match kv.split_once('=') {
                Some(("endpoint", v)) => {
                    b = b
                        .with_endpoint(v)
                        .with_allow_http(v.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                Some(("region", v)) => b = b.with_region(v),
                _ => return Err(format!("backup target {name}: unknown option {kv:?}")),
            }
        }
        let store = b
            .build()
            .map_err(|e| format!("backup target {name}: {e}"))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("s3-{name}"))
            .enable_all()
            .build()
            .map_err(|e| format!("backup target {name}: {e}"))?;
        let location = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        Ok(Self {
            name: name.into(),
            location,
            prefix,
            store: Arc::new(store),
            rt,
        })
    }

    fn path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn err(&self, e: object_store::Error) -> io::Error {
        let kind = match &e {
            object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(
            kind,
            format!("backup target {:?} ({}): {e}", self.name, self.location),
        )
    }

    /// Streams object `key` into `tx` a chunk at a time (a download); ends early if the
    /// receiver goes away. Returns the object's size once known.
    pub fn stream_to(
        self: &Arc<Self>,
        key: &str,
        tx: tokio::sync::mpsc::Sender<io::Result<bytes::Bytes>>,
    ) -> io::Result<u64> {
        let path = self.path(key);
        let me = self.clone();
        let r = self
            .rt
            .block_on(self.store.get(&path))
            .map_err(|e| self.err(e))?;
        let size = r.meta.size;
        self.rt.spawn(async move {
            let mut s = r.into_stream();
            while let Some(chunk) = s.next().await {
                let item = chunk.map_err(|e| me.err(e));
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(size)
    }
}

/// A multipart upload being written: parts go up as they fill, at most [`IN_FLIGHT`] at once.
struct Upload {
    key: String,
    path: ObjectPath,
    id: MultipartId,
    /// Bytes not yet in a part.
    buf: Vec<u8>,
    /// Parts uploading, oldest first.
    in_flight: VecDeque<tokio::task::JoinHandle<object_store::Result<PartId>>>,
    /// Parts uploaded, in order.
    parts: Vec<PartId>,
}

/// One task's use of a target: the configuration plus the upload it is writing.
pub struct S3Target {
    cfg: Arc<S3Config>,
    upload: Option<Upload>,
    /// Sizes this handle has seen (objects are written once: a size does not change under
    /// a reader), so a fetch's ranged reads need no HEAD each.
    sizes: std::collections::HashMap<String, u64>,
}

impl S3Target {
    /// A handle on `cfg` with nothing being written.
    pub fn new(cfg: Arc<S3Config>) -> Self {
        Self {
            cfg,
            upload: None,
            sizes: std::collections::HashMap::new(),
        }
    }

    fn writing(&mut self, key: &str) -> io::Result<&mut Upload> {
        match &mut self.upload {
            Some(u) if u.key == key => Ok(u),
            _ => Err(io::Error::other(format!("no upload open at {key}"))),
        }
    }

    /// Waits for the oldest part in flight.
    fn settle_one(cfg: &S3Config, u: &mut Upload) -> io::Result<()> {
        let Some(h) = u.in_flight.pop_front() else {
            return Ok(());
        };
        let part = cfg
            .rt
            .block_on(h)
            .map_err(|e| io::Error::other(format!("part upload: {e}")))?
            .map_err(|e| cfg.err(e))?;
        u.parts.push(part);
        Ok(())
    }

    /// Sends `bytes` as the next part, once fewer than [`IN_FLIGHT`] are uploading.
    fn send_part(cfg: &S3Config, u: &mut Upload, bytes: Vec<u8>) -> io::Result<()> {
        while u.in_flight.len() >= IN_FLIGHT {
            Self::settle_one(cfg, u)?;
        }
        let idx = u.parts.len() + u.in_flight.len();
        let (store, path, id) = (cfg.store.clone(), u.path.clone(), u.id.clone());
        u.in_flight.push_back(cfg.rt.spawn(async move {
            store
                .put_part(&path, &id, idx, PutPayload::from(bytes))
                .await
        }));
        Ok(())
    }

    /// Stops upload `u` at the store (its parts deleted).
    fn abort_open(cfg: &S3Config, u: &mut Upload) -> io::Result<()> {
        for h in u.in_flight.drain(..) {
            h.abort();
        }
        match cfg.rt.block_on(cfg.store.abort_multipart(&u.path, &u.id)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(cfg.err(e)),
        }
    }
}

impl Drop for S3Target {
    fn drop(&mut self) {
        // An upload never committed is abandoned: its parts are deleted now, not left to the
        // bucket's lifecycle rules (if the store is unreachable, the job record keeps the
        // upload's id and the next start aborts it).
        if let Some(mut u) = self.upload.take() {
            let _ = Self::abort_open(&self.cfg, &mut u);
        }
    }
}

impl ArchiveTarget for S3Target {
    fn location(&self) -> String {
        self.cfg.location.clone()
    }
    fn size(&mut self, key: &str) -> io::Result<Option<u64>> {
        let c = &self.cfg;
        match c.rt.block_on(c.store.head(&c.path(key))) {
            Ok(m) => {
                self.sizes.insert(key.into(), m.size);
                Ok(Some(m.size))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(c.err(e)),
        }
    }
    fn read_at(&mut self, key: &str, at: u64, len: usize) -> io::Result<Vec<u8>> {
        let size = match self.sizes.get(key) {
            Some(s) => *s,
            None => self.size(key)?.ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no object {key}"))
            })?,
        };
        let end = at.saturating_add(len as u64).min(size);
        if at >= end {
            return Ok(Vec::new());
        }
        let c = &self.cfg;
        c.rt.block_on(c.store.get_range(&c.path(key), at..end))
            .map(|b| b.to_vec())
            .map_err(|e| c.err(e))
    }
    fn begin(&mut self, key: &str) -> io::Result<Option<String>> {
        self.sizes.remove(key);
        if let Some(mut u) = self.upload.take() {
            let _ = Self::abort_open(&self.cfg, &mut u);
        }
        let c = &self.cfg;
        let path = c.path(key);
        let id =
            c.rt.block_on(c.store.create_multipart(&path))
                .map_err(|e| c.err(e))?;
        self.upload = Some(Upload {
            key: key.into(),
            path,
            id: id.clone(),
            buf: Vec::with_capacity(PART),
            in_flight: VecDeque::new(),
            parts: Vec::new(),
        });
        Ok(Some(id))
    }
    fn append(&mut self, key: &str, mut bytes: &[u8]) -> io::Result<()> {
        let cfg = self.cfg.clone();
        let u = self.writing(key)?;
        // Whole parts go up as they fill; memory stays about (IN_FLIGHT + 1) parts.
        while !bytes.is_empty() {
            let take = (PART - u.buf.len()).min(bytes.len());
            u.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if u.buf.len() == PART {
                let part = std::mem::replace(&mut u.buf, Vec::with_capacity(PART));
                Self::send_part(&cfg, u, part)?;
            }
        }
        Ok(())
    }
    fn commit(&mut self, key: &str) -> io::Result<()> {
        self.writing(key)?;
        let Some(mut u) = self.upload.take() else {
            return Err(io::Error::other(format!("no upload open at {key}")));
        };
        let c = self.cfg.clone();
        let done = (|| {
            // The last part may be short (or the only one, empty).
            if !u.buf.is_empty() || u.parts.len() + u.in_flight.len() == 0 {
                let last = std::mem::take(&mut u.buf);
                Self::send_part(&c, &mut u, last)?;
            }
            while !u.in_flight.is_empty() {
                Self::settle_one(&c, &mut u)?;
            }
            c.rt.block_on(
                c.store
                    .complete_multipart(&u.path, &u.id, std::mem::take(&mut u.parts)),
            )
            .map(|_| ())
            .map_err(|e| c.err(e))
        })();
        // Its parts are deleted now; should the store refuse that too, the upload stays
        // open here, so the task's abort tries again (and if that fails, the job record
        // keeps the upload's id for the next start).
        if done.is_err() && Self::abort_open(&c, &mut u).is_err() {
            self.upload = Some(u);
        }
        done
    }
    fn abort(&mut self, key: &str) -> io::Result<()> {
        match self.upload.take() {
            Some(mut u) if u.key == key => {
                let r = Self::abort_open(&self.cfg, &mut u);
                if r.is_err() {
                    self.upload = Some(u);
                }
                r
            }
            other => {
                self.upload = other;
                Ok(())
            }
        }
    }
    fn abort_upload(&mut self, key: &str, upload: &str) -> io::Result<()> {
        let c = &self.cfg;
        match c
            .rt
            .block_on(c.store.abort_multipart(&c.path(key), &upload.to_string()))
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(c.err(e)),
        }
    }
    fn put(&mut self, key: &str, bytes: &[u8]) -> io::Result<()> {
        self.sizes.remove(key);
        let c = &self.cfg;
        c.rt.block_on(c.store.put(&c.path(key), PutPayload::from(bytes.to_vec())))
            .map(|_| ())
            .map_err(|e| c.err(e))
    }
    fn delete(&mut self, key: &str) -> io::Result<()> {
        self.sizes.remove(key);
        let c = &self.cfg;
        match c.rt.block_on(c.store.delete(&c.path(key))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(c.err(e)),
        }
    }
    fn list(&mut self) -> io::Result<Vec<(String, u64)>> {
        let c = &self.cfg;
        let prefix = (!c.prefix.is_empty()).then(|| ObjectPath::from(c.prefix.as_str()));
        let metas: Vec<_> =
            c.rt.block_on(c.store.list(prefix.as_ref()).collect::<Vec<_>>());
        let mut out = Vec::new();
        let strip = if c.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", c.prefix)
        };
        for m in metas {
            let m = m.map_err(|e| c.err(e))?;
            let full = m.location.to_string();
            if let Some(key) = full.strip_prefix(&strip)
                && !key.contains('/')
            {
                out.push((key.to_string(), m.size));
            }
        }
        out.sort();
        Ok(out)
    }
}
