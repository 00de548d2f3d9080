//! The upload protocol as a step machine: an archive arrives chunk by chunk (an HTTP body, a
//! browser `File`), is written to `backups/.tmp/upload-<name>.tar` while its tar structure and
//! digests are checked, is then validated as an index (checkpoint decoded, log replayed), and
//! only then published as `backups/<name>.tar`.
//!
//! ```text
//! Create ─▶ (feed ─▶ Append)* ─▶ end ─▶ Sync ─▶ Decode checkpoint ─▶ Decode log
//!   ─▶ Rename ─▶ SyncDir ─▶ conclude (published)
//! any error or abort ─▶ remove the temp file ─▶ conclude (name released)
//! ```
//! A bad archive is refused as soon as its bytes show it (a bad header, digest or manifest
//! stops the stream), not after the whole body was stored.

use crate::archive::{
    ArchiveDecoder, ArchiveLayout, CHECKPOINT_PATH, LOG_PATH, Manifest, NullSink, decode_archived,
};
use crate::control::engine::Engine;
use crate::control::task::{Done, Io, Poll, Task};
use crate::engine::paths;
use crate::index::Index;
use std::collections::VecDeque;
use std::io::{self, Read};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Create,
    Stream,
    Append,
    Sync,
    DecodeCheckpoint,
    DecodeLog,
    Rename,
    SyncDir,
    /// Removing a renamed archive whose rename was not made durable.
    Unpublish,
    Cleanup,
    Conclude,
    Done,
}

/// A running upload (see the module doc).
pub struct UploadTask {
    name: String,
    phase: Phase,
    queue: VecDeque<Vec<u8>>,
    ended: bool,
    decoder: Option<ArchiveDecoder>,
    layout: Option<ArchiveLayout>,
    index: Option<Index>,
    received: u64,
    error: Option<String>,
    published: bool,
}

impl UploadTask {
    pub(crate) fn new(name: String) -> Self {
        Self {
            name,
            phase: Phase::Create,
            queue: VecDeque::new(),
            ended: false,
            decoder: Some(ArchiveDecoder::new()),
            layout: None,
            index: None,
            received: 0,
            error: None,
            published: false,
        }
    }

    /// The archive name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Hands the next bytes of the archive. Refused bytes (a structure or digest error) fail
    /// the upload at once.
    pub fn feed(&mut self, bytes: Vec<u8>) {
        if self.error.is_some() || self.ended {
            return;
        }
        self.received += bytes.len() as u64;
        match self.decoder.as_mut().map(|d| d.feed(&bytes, &mut NullSink)) {
            Some(Ok(())) => self.queue.push_back(bytes),
            Some(Err(e)) => self.fail(format!("invalid backup archive: {e}")),
            None => self.fail("upload already ended"),
        }
    }

    /// No more bytes: validate and publish.
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// Stops the upload (the body failed or broke a limit): nothing is published.
    pub fn abort(&mut self, reason: impl std::fmt::Display) {
        self.fail(reason);
    }

    /// True while the task has queued bytes to write or is waiting for more.
    pub fn wants_input(&self) -> bool {
        self.phase == Phase::Stream && self.queue.is_empty() && !self.ended
    }

    /// Why it failed, once done.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The published archive's manifest, once done.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.layout
            .as_ref()
            .filter(|_| self.published)
            .map(|l| &l.manifest)
    }

    fn tmp(&self) -> String {
        paths::upload_tmp(&self.name)
    }

    fn fail(&mut self, e: impl std::fmt::Display) {
        if self.error.is_some() || matches!(self.phase, Phase::Conclude | Phase::Done) {
            return;
        }
        self.error = Some(e.to_string());
        self.queue.clear();
        self.index = None;
        self.phase = if self.published {
            Phase::Unpublish
        } else {
            Phase::Cleanup
        };
    }

    fn range(&self, path: &str) -> (u64, u64) {
        self.layout
            .as_ref()
            .and_then(|l| l.range(path))
            .map_or((0, 0), |r| (r.offset, r.size))
    }
}

impl Task for UploadTask {
    fn poll(&mut self, _now_ms: u64) -> Poll {
        match self.phase {
            Phase::Create => Poll::Io(Io::Create { path: self.tmp() }),
            Phase::Stream => {
                if let Some(b) = self.queue.pop_front() {
                    self.phase = Phase::Append;
                    return Poll::Io(Io::Append {
                        path: self.tmp(),
                        bytes: b,
                    });
                }
                if !self.ended {
                    return Poll::Input;
                }
                match self.decoder.take().map(|d| d.finish()) {
                    // An incremental archive is an index only with its chain: uploads take
                    // whole ones (every upload is validated as an index before it is kept).
                    Some(Ok(layout)) if layout.manifest.base.is_some() => {
                        let base = layout.manifest.base.map(|b| b.name).unwrap_or_default();
                        self.fail(format!(
                            "invalid backup archive: it is incremental on {base:?}; upload a full backup (restore the chain where it is, then back it up whole)"
                        ));
                        self.poll(_now_ms)
                    }
                    Some(Ok(layout)) => {
                        self.layout = Some(layout);
                        self.phase = Phase::Sync;
                        Poll::Io(Io::Sync { path: self.tmp() })
                    }
                    Some(Err(e)) => {
                        self.fail(format!("invalid backup archive: {e}"));
                        self.poll(_now_ms)
                    }
                    None => {
                        self.fail("upload already ended");
                        self.poll(_now_ms)
                    }
                }
            }
            // Repeated only if a result was not handled.
            Phase::Append => Poll::Input,
            Phase::Sync => Poll::Io(Io::Sync { path: self.tmp() }),
            Phase::DecodeCheckpoint => {
                let (at, len) = self.range(CHECKPOINT_PATH);
                Poll::Decode {
                    path: self.tmp(),
                    at,
                    len,
                }
            }
            Phase::DecodeLog => {
                let (at, len) = self.range(LOG_PATH);
                Poll::Decode {
                    path: self.tmp(),
                    at,
                    len,
                }
            }
            Phase::Rename => Poll::Io(Io::Rename {
                from: self.tmp(),
                to: paths::backup(&self.name),
            }),
            Phase::SyncDir => Poll::Io(Io::SyncDir {
                dir: "backups".into(),
            }),
            Phase::Unpublish => Poll::Io(Io::Remove {
                path: paths::backup(&self.name),
            }),
            Phase::Cleanup => Poll::Io(Io::Remove { path: self.tmp() }),
            Phase::Conclude => Poll::Engine,
            Phase::Done => Poll::Done,
        }
    }

    fn handle(&mut self, result: io::Result<Done>) {
        if self.phase == Phase::Unpublish {
            self.published = false;
            self.phase = Phase::Cleanup;
            return;
        }
        if self.phase == Phase::Cleanup {
            // Best effort: a leftover temp file goes at the next start.
            self.phase = Phase::Conclude;
            return;
        }
        if let Err(e) = result {
            return self.fail(e);
        }
        self.phase = match self.phase {
            Phase::Create | Phase::Append => Phase::Stream,
            Phase::Sync => Phase::DecodeCheckpoint,
            Phase::Rename => {
                self.published = true;
                Phase::SyncDir
            }
            Phase::SyncDir => Phase::Conclude,
            ref p => p.clone(),
        };
    }

    fn decode(&mut self, reader: &mut dyn Read) {
        let Some(layout) = self.layout.as_ref() else {
            return self.fail("no archive layout");
        };
        match decode_archived(&layout.manifest, &mut self.index, reader) {
            Ok(None) => self.phase = Phase::DecodeLog,
            Ok(Some(_)) => {
                // Validation only: the index is not kept.
                self.index = None;
                self.phase = Phase::Rename;
            }
            Err(e) => self.fail(format!("invalid backup archive: {e}")),
        }
    }

    fn engine(&mut self, engine: &mut Engine, _now_ms: u64) {
        if self.phase == Phase::Conclude {
            engine.finish_upload(&self.name, self.published && self.error.is_none());
            self.phase = Phase::Done;
        }
    }
}
