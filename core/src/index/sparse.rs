//! Sparse retrieval: an inverted index from term id to postings (slot, weight), kept by the
//! index's one apply path (insert, update, delete, replay) and rebuilt from the stored sparse
//! parts when a checkpoint loads — derived data, so no file format changes.
//!
//! A query scores by dot product (`default`) or by dot product with each term weighted by its
//! inverse document frequency (`endee_bm25`: the client sends BM25 term weights for documents
//! and queries; the server knows how many documents hold each term). Results are exact.
//! Query cost tracks the postings that matter (MaxScore): terms are taken by decreasing upper
//! bound (query weight × the term's largest posting weight); once the best `k` scores so far
//! beat everything the remaining terms could add to a document not yet seen, those terms only
//! look up the candidates already found (a binary search in their slot-sorted postings)
//! instead of walking every posting.

use std::collections::HashMap;

/// How sparse parts are scored (Endee's `sparse_model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum SparseModel {
    /// Dense only.
    #[default]
    #[serde(rename = "None")]
    None,
    /// Plain dot product of query and document weights.
    #[serde(rename = "default")]
    Default,
    /// Dot product with each term weighted by its IDF, computed at query time.
    #[serde(rename = "endee_bm25")]
    Bm25,
}

impl SparseModel {
    /// Parses Endee's names (`None`, `default`, `endee_bm25`; case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Some(Self::None),
            "default" => Some(Self::Default),
            "endee_bm25" => Some(Self::Bm25),
            _ => None,
        }
    }
    /// Endee's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Default => "default",
            Self::Bm25 => "endee_bm25",
        }
    }
}

/// One term's postings, sorted by slot.
#[derive(Debug, Clone, Default)]
struct Postings {
    slots: Vec<u32>,
    weights: Vec<f32>,
    /// Largest |weight| ever posted (an upper bound; deletes don't lower it).
    max: f32,
    /// Some weight posted was negative (then a score can fall, and pruning is off).
    negative: bool,
}

impl Postings {
    fn find(&self, slot: u32) -> Result<usize, usize> {
        self.slots.binary_search(&slot)
    }
}

/// The inverted index of one index's sparse parts.
#[derive(Debug, Clone, Default)]
pub struct SparseIndex {
    terms: HashMap<u32, Postings>,
    /// Documents (slots) with at least one term.
    docs: u64,
    /// One past the highest slot ever posted (the size of a query's accumulators).
    slot_end: usize,
}

/// A scored slot, best first by `score`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SparseHit {
    /// The slot.
    pub slot: u32,
    /// Its score (higher is better).
    pub score: f32,
}

impl SparseIndex {
    /// Posts a document's terms (`terms` and `weights` of equal length; a slot must not be
    /// posted twice without [`SparseIndex::remove`] in between).
    pub fn add(&mut self, slot: u32, terms: &[u32], weights: &[f32]) {
        if terms.is_empty() {
            return;
        }
        self.docs += 1;
        self.slot_end = self.slot_end.max(slot as usize + 1);
        for (&t, &w) in terms.iter().zip(weights) {
            let p = self.terms.entry(t).or_default();
            let i = match p.find(slot) {
                // A term repeated in one document: weights add up, as a dot product would.
                Ok(i) => {
                    p.weights[i] += w;
                    i
                }
                Err(i) => {
                    p.slots.insert(i, slot);
                    p.weights.insert(i, w);
                    i
                }
            };
            p.max = p.max.max(p.weights[i].abs());
            p.negative |= p.weights[i] < 0.0;
        }
    }

    /// Removes a document's postings (`terms` as it was posted with).
    pub fn remove(&mut self, slot: u32, terms: &[u32]) {
        if terms.is_empty() {
            return;
        }
        self.docs = self.docs.saturating_sub(1);
        for t in terms {
            if let Some(p) = self.terms.get_mut(t) {
                if let Ok(i) = p.find(slot) {
                    p.slots.remove(i);
                    p.weights.remove(i);
                }
                if p.slots.is_empty() {
                    self.terms.remove(t);
                }
            }
        }
    }

    /// Documents holding `term`.
    pub fn doc_freq(&self, term: u32) -> u64 {
        self.terms.get(&term).map_or(0, |p| p.slots.len() as u64)
    }

    /// Documents with a sparse part.
    pub fn docs(&self) -> u64 {
        self.docs
    }

    /// BM25's inverse document frequency of `term` (never negative).
    pub fn idf(&self, term: u32) -> f32 {
        let n = self.docs as f64;
        let df = self.doc_freq(term) as f64;
        ((n - df + 0.5) / (df + 0.5)).ln_1p() as f32
    }

    /// The best `k` slots `accept`ed, by the model's score, best first; exact. Slots scoring
    /// zero (no shared term) are not returned.
    pub fn search(
        &self,
        terms: &[u32],
        weights: &[f32],
        model: SparseModel,
        k: usize,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<SparseHit> {
        // The query as (postings, weight), one entry per distinct term.
        let mut q: HashMap<u32, f32> = HashMap::with_capacity(terms.len());
        for (&t, &w) in terms.iter().zip(weights) {
            *q.entry(t).or_default() += w;
        }
        let mut plan: Vec<(&Postings, f32)> = q
            .into_iter()
            .filter_map(|(t, w)| {
                let p = self.terms.get(&t)?;
                let w = if model == SparseModel::Bm25 {
                    w * self.idf(t)
                } else {
                    w
                };
                (w != 0.0).then_some((p, w))
            })
            .collect();
        // Largest possible contribution first.
        let bound = |(p, w): &(&Postings, f32)| p.max * w.abs();
        plan.sort_by(|a, b| bound(b).total_cmp(&bound(a)));
        let mut rest: f32 = plan.iter().map(bound).sum();
        // Pruning needs scores that only grow as terms add up.
        let monotone = plan.iter().all(|(p, w)| *w > 0.0 && !p.negative);
        // Dense accumulators (a query touches a good part of the slots): score and state
        // per slot — 0 unseen, 1 candidate, 2 refused by `accept`.
        let mut score = vec![0f32; self.slot_end];
        let mut state = vec![0u8; self.slot_end];
        let mut seen: Vec<u32> = Vec::new();
        let mut theta = f32::NEG_INFINITY;
        for (p, w) in plan.iter().copied() {
            rest -= bound(&(p, w));
            let essential = !monotone || seen.len() < k || theta <= rest + bound(&(p, w));
            if essential || seen.len() * 8 > p.slots.len() {
                // Walk the postings (adding new candidates only while they could still win).
                for (&s, &pw) in p.slots.iter().zip(&p.weights) {
                    let i = s as usize;
                    match state[i] {
                        1 => score[i] += w * pw,
                        0 if essential => {
                            if accept(s) {
                                state[i] = 1;
                                score[i] = w * pw;
                                seen.push(s);
                            } else {
                                state[i] = 2;
                            }
                        }
                        _ => {}
                    }
                }
            } else {
                // Few candidates: look each one up instead of walking the list.
                for &s in &seen {
                    if let Ok(i) = p.find(s) {
                        score[s as usize] += w * p.weights[i];
                    }
                }
            }
            // A document not yet seen scores at most `rest`: once the k-th best beats that,
            // later terms add no candidates.
            // (Recomputed only while it is not yet enough: θ only grows, `rest` only shrinks.)
            if monotone && seen.len() >= k && theta <= rest {
                theta = kth_best(&seen, &score, k);
            }
        }
        let mut hits: Vec<SparseHit> = seen
            .into_iter()
            .map(|slot| SparseHit {
                slot,
                score: score[slot as usize],
            })
            .filter(|h| h.score != 0.0)
            .collect();
        let cut = k.min(hits.len());
        if cut > 0 && cut < hits.len() {
            hits.select_nth_unstable_by(cut - 1, by_score);
            hits.truncate(cut);
        }
        hits.sort_by(by_score);
        hits
    }
}

/// Best first; equal scores by slot.
fn by_score(a: &SparseHit, b: &SparseHit) -> std::cmp::Ordering {
    b.score.total_cmp(&a.score).then(a.slot.cmp(&b.slot))
}

/// The k-th best score among the candidates (`seen.len() >= k >= 1`).
fn kth_best(seen: &[u32], score: &[f32], k: usize) -> f32 {
    let mut v: Vec<f32> = seen.iter().map(|&s| score[s as usize]).collect();
    let i = k.min(v.len()).saturating_sub(1);
    v.select_nth_unstable_by(i, |a, b| b.total_cmp(a));
    v[i]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// Brute force over every document: the reference.
    fn brute(
        docs: &[(Vec<u32>, Vec<f32>)],
        ix: &SparseIndex,
        q: (&[u32], &[f32]),
        model: SparseModel,
        k: usize,
    ) -> Vec<SparseHit> {
        let mut hits: Vec<SparseHit> = docs
            .iter()
            .enumerate()
            .filter_map(|(slot, (t, w))| {
                let mut score = 0.0f32;
                for (&qt, &qw) in q.0.iter().zip(q.1) {
                    let qw = if model == SparseModel::Bm25 {
                        qw * ix.idf(qt)
                    } else {
                        qw
                    };
                    for (&dt, &dw) in t.iter().zip(w) {
                        if dt == qt {
                            score += qw * dw;
                        }
                    }
                }
                (score != 0.0).then_some(SparseHit {
                    slot: slot as u32,
                    score,
                })
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.slot.cmp(&b.slot)));
        hits.truncate(k);
        hits
    }

    #[test]
    fn search_equals_brute_force_with_pruning() {
        let mut r = SplitMix64::new(3);
        // Zipf-like terms: a few very common, most rare — where pruning matters.
        let term = |r: &mut SplitMix64| {
            let u = (r.below(1_000_000) as f64 + 1.0) / 1_000_001.0;
            (1.0 / u).powf(0.8) as u32 % 5000
        };
        let docs: Vec<(Vec<u32>, Vec<f32>)> = (0..3000)
            .map(|_| {
                let n = 1 + r.below(30) as usize;
                let t: Vec<u32> = (0..n).map(|_| term(&mut r)).collect();
                let w: Vec<f32> = (0..n)
                    .map(|_| (r.below(1000) as f32 + 1.0) / 100.0)
                    .collect();
                (t, w)
            })
            .collect();
        let mut ix = SparseIndex::default();
        for (s, (t, w)) in docs.iter().enumerate() {
            ix.add(s as u32, t, w);
        }
        for model in [SparseModel::Default, SparseModel::Bm25] {
            for _ in 0..100 {
                let n = 1 + r.below(8) as usize;
                let qt: Vec<u32> = (0..n).map(|_| term(&mut r)).collect();
                let qw: Vec<f32> = (0..n).map(|_| (r.below(100) as f32 + 1.0) / 10.0).collect();
                let k = 1 + r.below(20) as usize;
                let got = ix.search(&qt, &qw, model, k, &|_| true);
                let want = brute(&docs, &ix, (&qt, &qw), model, k);
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g.score - w.score).abs() <= 1e-3 * w.score.abs().max(1.0),
                        "{got:?} vs {want:?}"
                    );
                }
            }
        }
        // Removing a document takes it out of every answer.
        let (t0, _) = &docs[0];
        ix.remove(0, t0);
        let got = ix.search(
            t0,
            &vec![1.0; t0.len()],
            SparseModel::Default,
            3000,
            &|_| true,
        );
        assert!(got.iter().all(|h| h.slot != 0));
        // A filter is honoured.
        let got = ix.search(t0, &vec![1.0; t0.len()], SparseModel::Default, 50, &|s| {
            s % 2 == 1
        });
        assert!(got.iter().all(|h| h.slot % 2 == 1));
    }
}
