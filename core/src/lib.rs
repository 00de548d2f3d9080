//! # cairn-core
//!
//! CairnDB's database as pure state machines: no files, sockets, threads or clocks. Hosts
//! (the native server, the browser Worker, Node) feed it requests, time and entropy, perform
//! the IO it describes, and report back. See "How it works" in the repository's `README.md`.
//!
//! Three folders show the architecture:
//! - [`index`]: one vector index in memory — HNSW graph, vector codes, filters, kernels;
//! - [`durability`]: what goes to disk — log records, checkpoints, digests, archives, the file
//!   layout, and the [`Storage`] a single-threaded host lends;
//! - [`control`]: the control plane — the engine (catalog, write gate, generations, jobs) and
//!   the step machines of every protocol (write, recovery, checkpoint, backup, restore, upload).
//!
//! [`Database`] puts the three together for single-threaded hosts; the native server drives
//! the same engine and step machines from its threads.

pub mod control;
pub mod database;
pub mod durability;
pub mod fault;
pub mod index;
pub mod rng;
pub mod wire;
pub mod wire_v2;

// Short paths for what hosts use most (`cairn_core::checkpoint`, `cairn_core::engine`, …).
pub use control::{engine, registry};
pub use durability::{archive, checkpoint, digest, record, storage, target};
pub use index::{filter, hnsw, kernels, originals, params, sparse};
pub(crate) use index::{links, rows, slots, vectors};

pub use database::{Database, DatabaseError};
pub use engine::{Engine, EngineError, Outcome};
pub use fault::Fault;
pub use filter::{Filter, FilterError};
pub use index::{Index, IndexError, SearchHit, SearchRequest, VectorRecord};
pub use params::{IndexParams, ParamError, Precision, SpaceType};
pub use record::{Record, UpsertItem};
pub use registry::{CutPoint, Job, JobKind, JobRegistry, JobStatus};
pub use rows::set_sealed_block_hook;
pub use storage::{MemStorage, Storage};
