//! What kind of refusal an error is, independent of any protocol: hosts map a [`Fault`] to
//! their own answer (the native server to an HTTP status, the browser to a `CairnError`'s
//! `status`), so the core says *what* went wrong and never speaks HTTP.

use crate::database::DatabaseError;
use crate::engine::EngineError;
use crate::index::IndexError;
use crate::registry::JobError;

/// The kind of an error, as a caller should act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The input is malformed or breaks a rule: fix the request.
    BadInput,
    /// The index, vector, backup or job does not exist.
    NotFound,
    /// The request conflicts with the current state (a name taken, a job running).
    Conflict,
    /// The target exists but can't serve now (loading, damaged, read-only): retry or repair.
    Unavailable,
    /// Storage or an invariant failed: not the caller's fault.
    Internal,
}

impl EngineError {
    /// The kind of this refusal.
    pub fn fault(&self) -> Fault {
        match self {
            Self::InvalidBackupName(_)
            | Self::Invalid(_)
            | Self::UnknownTarget(_)
            | Self::BadBase { .. } => Fault::BadInput,
            Self::IndexNotFound(_) | Self::BackupNotFound(_) | Self::Job(JobError::NotFound(_)) => {
                Fault::NotFound
            }
            Self::IndexBroken { .. } | Self::IndexLoading(_) | Self::WriteHeld(_) => {
                Fault::Unavailable
            }
            _ => Fault::Conflict,
        }
    }
}

impl IndexError {
    /// The kind of this refusal.
    pub fn fault(&self) -> Fault {
        match self {
            Self::NotFound(_) => Fault::NotFound,
            Self::Io(_) => Fault::Internal,
            _ => Fault::BadInput,
        }
    }
}

impl DatabaseError {
    /// The kind of this error.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Engine(e) => e.fault(),
            Self::Index(e) => e.fault(),
            Self::Archive(_) => Fault::BadInput,
            Self::Io(_) | Self::Corrupt(_) => Fault::Internal,
            // A job that found its input bad (a hostile archive) failed for the caller.
            Self::JobFailed { error, .. } if error.starts_with("invalid backup archive") => {
                Fault::BadInput
            }
            Self::JobFailed { status, .. } if status == "cancelled" => Fault::Conflict,
            Self::JobFailed { .. } => Fault::Internal,
        }
    }
}
