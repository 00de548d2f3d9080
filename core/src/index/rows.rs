//! Fixed-width rows (one per slot) stored in blocks of a power-of-two number of rows.
//!
//! Why not one `Vec<T>`: a growing `Vec` doubles, so it copies the whole index under the
//! writer lock each time it grows (a pause that grows with the index) and holds up to twice
//! the memory while it copies, and the freed old buffer often stays resident in the
//! allocator. Blocks never move: growth allocates one zeroed block (its pages become resident
//! only as rows are written), and memory tracks the number of rows.

/// Fewest rows per block (2^10): the block table stays small, and a block is at least a few
/// pages. In wasm every block has this many rows: linear memory commits what is allocated, so
/// the unused tail of the last block must stay small.
const MIN_BLOCK_SHIFT: u32 = 10;
/// Most rows per block (2^14) on native targets.
const MAX_BLOCK_SHIFT: u32 = 14;
/// Native blocks aim at whole multiples of this (the x86-64 huge page): a block that is
/// 2 MiB-aligned and a multiple of 2 MiB long can be mapped by huge pages only, one TLB
/// entry per 2 MiB instead of per 4 KiB, which matters when a search touches vectors all over
/// a large index. The native host maps such blocks 2 MiB-aligned and collapses each into huge
/// pages once it is full (see [`set_sealed_block_hook`]).
const HUGE_PAGE: usize = 2 << 20;

/// log2 of the rows per block for rows of `row_bytes` bytes: the fewest rows that make the
/// block a whole multiple of [`HUGE_PAGE`] within the bounds above, else the fewest rows.
///
/// Rows whose blocks cannot be huge-page multiples (the 33-word link rows) stay in small
/// blocks: a block of, say, 2 MiB + 64 KiB would get one huge page plus small ones, and the
/// index's last block would hold a 2 MiB page for a few rows. A search reads one link row per
/// ~20 vectors, so their TLB misses matter little.
fn block_shift(row_bytes: usize) -> u32 {
    if cfg!(target_arch = "wasm32") || row_bytes == 0 {
        return MIN_BLOCK_SHIFT;
    }
    (MIN_BLOCK_SHIFT..=MAX_BLOCK_SHIFT)
        .find(|&s| (row_bytes << s).is_multiple_of(HUGE_PAGE))
        .unwrap_or(MIN_BLOCK_SHIFT)
}

/// Receives `(address, bytes)` of each block whose rows are all written and whose size is a
/// whole number of [`HUGE_PAGE`]s (native targets only). Set by a host that can back such
/// blocks with huge pages; see [`set_sealed_block_hook`].
static SEALED_BLOCK_HOOK: std::sync::OnceLock<fn(usize, usize)> = std::sync::OnceLock::new();

/// Installs `hook`, called (under the index's writer lock, so keep it short) with the address
/// and length of each vector block once it is full (when the row after its last is appended,
/// so an index's last block is never passed and stays in small pages: resident memory keeps
/// tracking the rows written). A full block never moves and keeps its length; the hook may
/// only advise the OS about that memory (the native host collapses it into 2 MiB huge pages).
/// Returns false if a hook was already installed.
pub fn set_sealed_block_hook(hook: fn(usize, usize)) -> bool {
    SEALED_BLOCK_HOOK.set(hook).is_ok()
}

/// Rows of `width` elements, addressed by row number.
#[derive(Debug, Clone)]
pub(crate) struct Rows<T> {
    width: usize,
    len: usize,
    /// log2 of the rows per block (see [`block_shift`]).
    shift: u32,
    blocks: Vec<Box<[T]>>,
    /// Rows a bulk load said it will write ([`Rows::expect_rows`]).
    expect: usize,
    /// Leading blocks already handed to the sealed-block hook.
    advised: usize,
}

impl<T: Copy + Default> Rows<T> {
    /// No rows; each row will hold `width` elements.
    pub fn new(width: usize) -> Self {
        Self {
            width,
            len: 0,
            shift: block_shift(width * std::mem::size_of::<T>()),
            blocks: Vec::new(),
            expect: 0,
            advised: 0,
        }
    }

    /// Says `n` rows will be written (a checkpoint being loaded): each block those rows fill
    /// whole goes to the sealed-block hook when it is allocated, before any row is written,
    /// instead of once full. Advising memory still untouched costs nothing to move; advising
    /// it once written makes the host copy it (measured: a third of a restore's time went to
    /// `MADV_COLLAPSE` copying freshly loaded blocks). A count that overstates costs at most
    /// the last block's advice.
    pub fn expect_rows(&mut self, n: usize) {
        self.expect = n;
    }

    /// Number of rows.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Row `i`. Panics if `i >= len()` (callers index only slots they created).
    #[inline(always)]
    pub fn row(&self, i: usize) -> &[T] {
        let o = (i & self.mask()) * self.width;
        &self.blocks[i >> self.shift][o..o + self.width]
    }

    /// Row `i`, writable.
    #[inline(always)]
    pub fn row_mut(&mut self, i: usize) -> &mut [T] {
        let o = (i & self.mask()) * self.width;
        &mut self.blocks[i >> self.shift][o..o + self.width]
    }

    #[inline(always)]
    fn mask(&self) -> usize {
        (1 << self.shift) - 1
    }

    /// Appends a row of default values and returns it.
    pub fn push_default(&mut self) -> &mut [T] {
        if self.len == self.blocks.len() << self.shift {
            self.seal_last_block();
            self.blocks
                .push(vec![T::default(); self.width << self.shift].into_boxed_slice());
            if (self.blocks.len() << self.shift) <= self.expect {
                self.seal_last_block();
            }
        }
        self.len += 1;
        self.row_mut(self.len - 1)
    }

    /// Hands the (full) last block to the sealed-block hook if it is a whole number of huge
    /// pages.
    fn seal_last_block(&mut self) {
        if self.advised >= self.blocks.len() {
            return;
        }
        self.advised = self.blocks.len();
        let (Some(block), Some(hook)) = (self.blocks.last(), SEALED_BLOCK_HOOK.get()) else {
            return;
        };
        let bytes = std::mem::size_of_val::<[T]>(block);
        if !cfg!(target_arch = "wasm32") && bytes.is_multiple_of(HUGE_PAGE) {
            hook(block.as_ptr() as usize, bytes);
        }
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
    fn block_sizes_are_huge_page_multiples_where_possible() {
        if cfg!(target_arch = "wasm32") {
            return;
        }
        // 384-d float32: 4,096 rows = 6 MiB; 128-d float32: 2 MiB; 384-d int8: 6 MiB.
        assert_eq!(block_shift(1536), 12);
        assert_eq!(block_shift(512), 12);
        assert_eq!(block_shift(384), 14);
        // 33 links of 4 bytes: no power of two rows makes a multiple: small blocks.
        assert_eq!(block_shift(132), 10);
        // Huge rows: the fewest rows.
        assert_eq!(block_shift(1 << 20), 10);
    }

    static SEALED: std::sync::Mutex<Vec<(usize, usize)>> = std::sync::Mutex::new(Vec::new());

    #[test]
    fn full_huge_page_blocks_are_sealed_and_the_open_one_is_not() {
        if cfg!(target_arch = "wasm32") {
            return;
        }
        assert!(set_sealed_block_hook(|a, n| {
            SEALED.lock().map(|mut v| v.push((a, n))).ok();
        }));
        // 512 floats a row: 1,024 rows = 2 MiB blocks.
        let mut r: Rows<f32> = Rows::new(512);
        let block = 1usize << r.shift;
        for i in 0..2 * block + 1 {
            r.push_iter([i as f32]);
        }
        let first = r.row(0).as_ptr() as usize;
        let second = r.row(block).as_ptr() as usize;
        let sealed = SEALED.lock().map(|v| v.clone()).unwrap_or_default();
        let bytes = block * 512 * 4;
        assert!(sealed.contains(&(first, bytes)) && sealed.contains(&(second, bytes)));
        let third = r.row(2 * block).as_ptr() as usize;
        assert!(
            !sealed.iter().any(|&(a, _)| a == third),
            "the open block is not sealed"
        );
        // Rows whose blocks are not huge-page multiples are never sealed.
        let mut links: Rows<u32> = Rows::new(33);
        for _ in 0..3000 {
            links.push_default();
        }
        let l0 = links.row(0).as_ptr() as usize;
        let sealed = SEALED.lock().map(|v| v.clone()).unwrap_or_default();
        assert!(!sealed.iter().any(|&(a, _)| a == l0));
        assert_eq!(
            r.row(block)[0],
            block as f32,
            "sealing leaves rows as written"
        );
    }

    #[test]
    fn rows_cross_block_boundaries() {
        let mut r: Rows<u32> = Rows::new(3);
        let block = 1usize << r.shift;
        for i in 0..(block * 2 + 5) as u32 {
            r.push_row(&[i, i + 1, i + 2]);
        }
        let b = block as u32;
        assert_eq!(r.len(), block * 2 + 5);
        assert_eq!(r.row(block - 1), &[b - 1, b, b + 1]);
        assert_eq!(r.row(block), &[b, b + 1, b + 2]);
        r.row_mut(7)[1] = 99;
        assert_eq!(r.row(7), &[7, 99, 9]);
        r.push_iter([5]);
        assert_eq!(r.row(r.len() - 1), &[5, 0, 0]);
        let mut c: Column<u8> = Column::default();
        let n = 2 * (1usize << c.0.shift) + 952;
        (0..n as u32).for_each(|i| c.push(i as u8));
        c[n - 1] = 7;
        assert_eq!(
            (c.len(), c[1500], c.get(n - 1), c.get(n)),
            (n, 1500u32 as u8, Some(7), None)
        );
        assert_eq!(c.iter().count(), n);
    }
}
