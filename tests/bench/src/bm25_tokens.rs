//! Tokens and BM25 document weights for the minilm-50k sentences, shared by the sparse
//! benchmark and the core's sparse exactness test (and mirrored by `sparse_bench.py`): what a
//! client would compute and send.

use std::collections::HashMap;

/// Lower-cased alphanumeric words, hashed to term ids (FNV-1a, 24 bits).
pub fn tokens(text: &str) -> Vec<u32> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut h: u32 = 0x811c_9dc5;
            for b in w.bytes() {
                h = (h ^ b as u32).wrapping_mul(0x0100_0193);
            }
            h & 0xff_ffff
        })
        .collect()
}

/// BM25 document weights (k1 = 1.2, b = 0.75; Lucene's form, without the (k1 + 1) factor,
/// as `bm25s` computes them), sorted by term.
pub fn bm25_doc(toks: &[u32], avgdl: f32) -> (Vec<u32>, Vec<f32>) {
    let mut tf: HashMap<u32, f32> = HashMap::new();
    for t in toks {
        *tf.entry(*t).or_default() += 1.0;
    }
    let dl = toks.len() as f32;
    let mut v: Vec<(u32, f32)> = tf
        .into_iter()
        .map(|(t, f)| (t, f / (f + 1.2 * (0.25 + 0.75 * dl / avgdl))))
        .collect();
    v.sort_by_key(|x| x.0);
    v.into_iter().unzip()
}
