//! Durability: what goes to disk and how it is read back — log records and their frames, the
//! checkpoint format, digests, backup archives, the file layout, and the [`storage::Storage`]
//! a single-threaded host lends the core. Formats only: *when* each is written is the control
//! plane's business ([`crate::control`]).

pub mod archive;
pub mod checkpoint;
pub mod digest;
pub mod layout;
pub mod record;
pub mod storage;
pub mod target;
