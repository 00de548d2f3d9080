//! The ANN-benchmarks file layout (`.fvecs` / `.ivecs`): each row a little-endian `i32`
//! dimension, then that many `f32` (fvecs) or `i32` (ivecs) values. Shared by the benchmarks.

/// Every row of `path`; `float` reads fvecs, else ivecs (values converted to f32).
pub fn read_vecs(path: &str, float: bool) -> Vec<Vec<f32>> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let mut out = Vec::new();
    let mut i = 0;
    while i + 4 <= b.len() {
        let d = u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        i += 4;
        let row = b[i..i + 4 * d]
            .chunks_exact(4)
            .map(|c| {
                let x = [c[0], c[1], c[2], c[3]];
                if float {
                    f32::from_le_bytes(x)
                } else {
                    i32::from_le_bytes(x) as f32
                }
            })
            .collect();
        out.push(row);
        i += 4 * d;
    }
    out
}
