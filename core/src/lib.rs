//! # cairn-core
//!
//! CairnDB's database as pure state machines: no files, sockets, threads or clocks. Hosts
//! (the native server, the browser Worker, Node) feed it requests, time and entropy, perform
//! the IO it describes, and report back. See "How it works" in the repository's `README.md`.

pub mod checkpoint;
pub mod digest;
pub mod fault;
pub mod filter;
pub mod hnsw;
pub mod index;
pub mod kernels;
mod links;
pub mod originals;
pub mod params;
pub mod record;
pub mod rng;
mod rows;
mod slots;
pub mod store;
pub mod wire;

pub use filter::{Filter, FilterError};
pub use index::{Index, IndexError, SearchHit, SearchRequest, VectorRecord};
pub use params::{IndexParams, ParamError, Precision, SpaceType};
pub use record::{Record, UpsertItem};
pub use rows::set_sealed_block_hook;
pub mod archive;
pub mod control;
pub use control::{engine, registry};

pub use engine::{Engine, EngineError, Outcome};
pub use fault::Fault;
pub use registry::{CutPoint, Job, JobKind, JobRegistry, JobStatus};
pub mod database;
pub mod storage;

pub use database::{Database, DatabaseError};
pub use storage::{MemStorage, Storage};
