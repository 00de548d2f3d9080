//! The control plane: the catalog of indexes and archives, the write gate, the job registry,
//! and the step machines (tasks) that carry out every multi-step protocol — backup, restore,
//! upload, graph rebuild — as values a host executes, and recovery at open. See [`task`] for the shape every host drives.

pub mod backup;
pub mod engine;
pub mod gate;
pub mod generation;
pub mod rebuild;
pub mod recovery;
pub mod registry;
pub mod restore;
pub mod schedule;
pub mod task;
pub mod tenants;
pub mod upload;
