//! Reading an index's float32 originals from its checkpoint file with `pread`: positionless,
//! so any number of searches share one open file.

use cairn_core::originals::CheckpointBytes;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// A checkpoint file as the source of originals for searches and the next checkpoint.
pub struct PreadFile<'a>(pub &'a File);

impl CheckpointBytes for PreadFile<'_> {
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        FileExt::read_exact_at(self.0, buf, offset)
    }
}
