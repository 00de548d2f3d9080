//! Building an index in-process as a client would insert into it: ids "0", "1", … in batches,
//! each validated and applied through the index's own write path. Shared by the benchmarks.

use cairn_core::{Index, IndexParams, UpsertItem};

/// An index of `params` holding `base`, inserted `batch` vectors at a time.
pub fn build(base: &[Vec<f32>], params: IndexParams, batch: usize) -> Index {
    let mut ix = Index::new(params).expect("params");
    for (c, chunk) in base.chunks(batch).enumerate() {
        let items = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| UpsertItem {
                id: (c * batch + i).to_string(),
                vector: v.clone(),
                meta: vec![],
                filter: String::new(),
                norm: 1.0,
                sparse_indices: vec![],
                sparse_values: vec![],
            })
            .collect();
        let rec = ix.prepare_upsert(items).expect("valid");
        ix.apply(&rec);
    }
    ix
}
