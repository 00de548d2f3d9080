//! Fixed-width rows (one per slot) stored in blocks of [`BLOCK_ROWS`] rows.
//!
//! Why not one `Vec<T>`: a growing `Vec` doubles, so it copies the whole index under the
//! writer lock each time it grows (a pause that grows with the index) and holds up to twice
//! the memory while it copies, and the freed old buffer often stays resident in the
//! allocator. Blocks never move: growth allocates one zeroed block (its pages become resident
//! only as rows are written), and memory tracks the number of rows.

/// Rows per block: large enough that the block table stays in L1, small enough that the
/// unused tail of the last block is a few hundred KiB at most for typical widths.
pub(crate) const BLOCK_ROWS: usize = 1024;

/// Rows of `width` elements, addressed by row number.
#[derive(Debug, Clone)]
pub(crate) struct Rows<T> {
    width: usize,
    len: usize,
    blocks: Vec<Box<[T]>>,
}

impl<T: Copy + Default> Rows<T> {
    /// No rows; each row will hold `width` elements.
    pub fn new(width: usize) -> Self {
        Self {
            width,
            len: 0,
            blocks: Vec::new(),
        }
    }

    /// Number of rows.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Row `i`. Panics if `i >= len()` (callers index only slots they created).
    #[inline(always)]
    pub fn row(&self, i: usize) -> &[T] {
        let o = (i % BLOCK_ROWS) * self.width;
        &self.blocks[i / BLOCK_ROWS][o..o + self.width]
    }

    /// Row `i`, writable.
    #[inline(always)]
    pub fn row_mut(&mut self, i: usize) -> &mut [T] {
        let o = (i % BLOCK_ROWS) * self.width;
        &mut self.blocks[i / BLOCK_ROWS][o..o + self.width]
    }

    /// Appends a row of default values and returns it.
    pub fn push_default(&mut self) -> &mut [T] {
        if self.len == self.blocks.len() * BLOCK_ROWS {
            self.blocks
                .push(vec![T::default(); BLOCK_ROWS * self.width].into_boxed_slice());
        }
        self.len += 1;
        self.row_mut(self.len - 1)
    }

    /// Appends a row copied from `row` (shorter input leaves the rest default).
    pub fn push_row(&mut self, row: &[T]) {
        let w = self.width.min(row.len());
        self.push_default()[..w].copy_from_slice(&row[..w]);
    }

    /// Appends a row from an iterator (extra items are ignored, missing ones stay default).
    pub fn push_iter(&mut self, items: impl IntoIterator<Item = T>) {
        for (o, x) in self.push_default().iter_mut().zip(items) {
            *o = x;
        }
    }

    /// Heap bytes of the rows written so far (the unwritten tail of the last block is
    /// allocated zeroed and not resident until used).
    pub fn heap_bytes(&self) -> usize {
        self.len * self.width * std::mem::size_of::<T>()
            + self.blocks.capacity() * std::mem::size_of::<Box<[T]>>()
    }
}

/// One value per slot, in blocks like [`Rows`]: a growable array that never reallocates, for
/// the per-slot side arrays (scales, norms, levels, offsets).
#[derive(Debug, Clone)]
pub(crate) struct Column<T>(Rows<T>);

impl<T: Copy + Default> Default for Column<T> {
    fn default() -> Self {
        Self(Rows::new(1))
    }
}

impl<T: Copy + Default> Column<T> {
    /// Number of values.
    #[inline]
    pub fn len(&self) -> usize {
        self.0.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    /// Appends a value.
    pub fn push(&mut self, x: T) {
        self.0.push_default()[0] = x;
    }

    /// The value at `i`, if any.
    #[inline(always)]
    pub fn get(&self, i: usize) -> Option<T> {
        (i < self.0.len).then(|| self.0.row(i)[0])
    }

    /// Iterates the values in order.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        (0..self.0.len).map(|i| self.0.row(i)[0])
    }

    /// Heap bytes (see [`Rows::heap_bytes`]).
    pub fn heap_bytes(&self) -> usize {
        self.0.heap_bytes()
    }
}

impl<T: Copy + Default> std::ops::Index<usize> for Column<T> {
    type Output = T;
    #[inline(always)]
    fn index(&self, i: usize) -> &T {
        &self.0.row(i)[0]
    }
}

impl<T: Copy + Default> std::ops::IndexMut<usize> for Column<T> {
    #[inline(always)]
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.0.row_mut(i)[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_cross_block_boundaries() {
        let mut r: Rows<u32> = Rows::new(3);
        for i in 0..(BLOCK_ROWS * 2 + 5) as u32 {
            r.push_row(&[i, i + 1, i + 2]);
        }
        assert_eq!(r.len(), BLOCK_ROWS * 2 + 5);
        assert_eq!(r.row(BLOCK_ROWS - 1), &[1023, 1024, 1025]);
        assert_eq!(r.row(BLOCK_ROWS), &[1024, 1025, 1026]);
        r.row_mut(7)[1] = 99;
        assert_eq!(r.row(7), &[7, 99, 9]);
        r.push_iter([5]);
        assert_eq!(r.row(r.len() - 1), &[5, 0, 0]);
        let mut c: Column<u8> = Column::default();
        (0..3000u32).for_each(|i| c.push(i as u8));
        c[2999] = 7;
        assert_eq!(
            (c.len(), c[1500], c.get(2999), c.get(3000)),
            (3000, 1500u32 as u8, Some(7), None)
        );
        assert_eq!(c.iter().count(), 3000);
    }
}
