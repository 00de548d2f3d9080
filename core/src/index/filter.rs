//! Endee's filter language and the per-index filter postings.
//!
//! A filter is an array of single-field conditions, ANDed:
//! `[{"city": {"$eq": "NY"}}, {"age": {"$range": [18, 30]}}, {"tag": {"$in": ["a", "b"]}}]`.
//! Stored filter values that are numbers go to a sorted numeric index; strings and booleans go
//! to category bitmaps. `$range` is inclusive and numeric only.

use roaring::RoaringBitmap;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use thiserror::Error;

/// Longest category value accepted (Endee's limit).
pub const MAX_CATEGORY_LEN: usize = 255;

/// A malformed filter; the message says what is wrong and how it should look.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FilterError {
    /// Not an array of conditions.
    #[error("filter must be an array. Please use format: [{{\"field\":{{\"$op\":value}}}}]")]
    NotArray,
    /// A condition with zero or several fields.
    #[error("each condition must be a single-field object, got: {0}")]
    Condition(String),
    /// An operator object with zero or several keys.
    #[error("operator must be a single-field object like {{\"$eq\": value}}, got: {0}")]
    Operator(String),
    /// An operator other than `$eq`, `$in`, `$range`.
    #[error("unsupported operator: {0} (supported: $eq, $in, $range)")]
    Unsupported(String),
    /// A value of the wrong type for its operator.
    #[error("invalid value for {op}: {detail}")]
    Value {
        /// The operator.
        op: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The filter text is not JSON.
    #[error("filter is not valid JSON: {0}")]
    Json(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Num(f64),
    Cat(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Cond {
    Eq(String, Scalar),
    In(String, Vec<Scalar>),
    Range(String, f64, f64),
}

/// A parsed, valid filter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    conds: Vec<Cond>,
}

fn scalar(op: &'static str, v: &Value) -> Result<Scalar, FilterError> {
    match v {
        Value::Number(n) => n.as_f64().map(Scalar::Num).ok_or(FilterError::Value {
            op,
            detail: format!("{n} is not a finite number"),
        }),
        Value::String(s) if s.len() > MAX_CATEGORY_LEN => Err(FilterError::Value {
            op,
            detail: format!(
                "category value too long ({} > {MAX_CATEGORY_LEN} bytes)",
                s.len()
            ),
        }),
        Value::String(s) => Ok(Scalar::Cat(cat_key_str(s))),
        Value::Bool(b) => Ok(Scalar::Cat(cat_key_bool(*b))),
        other => Err(FilterError::Value {
            op,
            detail: format!("expected a string, number or boolean, got {other}"),
        }),
    }
}

fn cat_key_str(s: &str) -> String {
    format!("s{s}")
}
fn cat_key_bool(b: bool) -> String {
    if b { "b1".into() } else { "b0".into() }
}

impl Filter {
    /// Parses a filter from JSON text (the form search requests carry).
    pub fn parse_str(s: &str) -> Result<Self, FilterError> {
        let v: Value = serde_json::from_str(s).map_err(|e| FilterError::Json(e.to_string()))?;
        Self::parse(&v)
    }

    /// Parses a filter from a JSON value (an array of conditions).
    pub fn parse(v: &Value) -> Result<Self, FilterError> {
        let arr = v.as_array().ok_or(FilterError::NotArray)?;
        let mut conds = Vec::with_capacity(arr.len());
        for c in arr {
            let obj = c
                .as_object()
                .filter(|o| o.len() == 1)
                .ok_or_else(|| FilterError::Condition(c.to_string()))?;
            let Some((field, opv)) = obj.iter().next() else {
                return Err(FilterError::Condition(c.to_string()));
            };
            let op = opv
                .as_object()
                .filter(|o| o.len() == 1)
                .ok_or_else(|| FilterError::Operator(opv.to_string()))?;
            let Some((name, val)) = op.iter().next() else {
                return Err(FilterError::Operator(opv.to_string()));
            };
            let f = field.clone();
            conds.push(match name.as_str() {
                "$eq" => Cond::Eq(f, scalar("$eq", val)?),
                "$in" => {
                    let items = val.as_array().ok_or(FilterError::Value {
                        op: "$in",
                        detail: format!("expected an array, got {val}"),
                    })?;
                    Cond::In(
                        f,
                        items
                            .iter()
                            .map(|x| scalar("$in", x))
                            .collect::<Result<_, _>>()?,
                    )
                }
                "$range" => {
                    let bad = || FilterError::Value {
                        op: "$range",
                        detail: format!(
                            "must be [start, end] array with exactly 2 numbers, got {val}"
                        ),
                    };
                    let items = val.as_array().filter(|a| a.len() == 2).ok_or_else(bad)?;
                    let lo = items[0].as_f64().ok_or_else(bad)?;
                    let hi = items[1].as_f64().ok_or_else(bad)?;
                    if lo > hi {
                        return Err(FilterError::Value {
                            op: "$range",
                            detail: format!("invalid range: start {lo} > end {hi}"),
                        });
                    }
                    Cond::Range(f, lo, hi)
                }
                other => return Err(FilterError::Unsupported(other.to_string())),
            });
        }
        Ok(Self { conds })
    }

    /// True when the filter has no condition (matches everything).
    pub fn is_empty(&self) -> bool {
        self.conds.is_empty()
    }
}

/// Maps an f64 to a u64 with the same order, so numbers can key a BTreeMap.
fn ord_key(x: f64) -> u64 {
    // -0 and +0 are one number (`-0 == 0`): one key, so a range [0, -0] (start ≤ end as
    // numbers) is not a reversed key range, which `BTreeMap::range` would panic on (found
    // by the `filter` fuzz target).
    let x = if x == 0.0 { 0.0 } else { x };
    let b = x.to_bits();
    if b >> 63 == 1 { !b } else { b | (1 << 63) }
}

/// Postings: which slots carry which filter value.
#[derive(Debug, Clone, Default)]
pub struct FilterIndex {
    cats: HashMap<String, HashMap<String, RoaringBitmap>>,
    nums: HashMap<String, BTreeMap<u64, RoaringBitmap>>,
}

/// A stored filter read back: a JSON object (or nothing), without the limits new writes keep.
pub fn parse_object(s: &str) -> Result<Map<String, Value>, FilterError> {
    // Most vectors carry no filter: skip the parser for them (a checkpoint load parses one
    // filter a vector).
    if s.trim().is_empty() || s == "{}" {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(FilterError::Value {
            op: "filter",
            detail: format!("a vector's filter must be a JSON object, got {other}"),
        }),
        Err(e) => Err(FilterError::Json(e.to_string())),
    }
}

/// Stored filter values are JSON objects; anything else is rejected at write time.
pub fn parse_stored(s: &str) -> Result<Map<String, Value>, FilterError> {
    if s.trim().is_empty() || s == "{}" {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(m)) => {
            for (k, v) in &m {
                // Arrays are indexed value by value (see `FilterIndex::edit`): check each.
                let values = match v {
                    Value::Array(a) => a.as_slice(),
                    one => std::slice::from_ref(one),
                };
                for x in values {
                    if let Value::String(x) = x
                        && x.len() > MAX_CATEGORY_LEN
                    {
                        return Err(FilterError::Value {
                            op: "filter",
                            detail: format!(
                                "value of {k} too long ({} > {MAX_CATEGORY_LEN} bytes)",
                                x.len()
                            ),
                        });
                    }
                }
            }
            Ok(m)
        }
        Ok(other) => Err(FilterError::Value {
            op: "filter",
            detail: format!("a vector's filter must be a JSON object, got {other}"),
        }),
        Err(e) => Err(FilterError::Json(e.to_string())),
    }
}

impl FilterIndex {
    fn edit(&mut self, slot: u32, filter: &Map<String, Value>, add: bool) {
        for (field, v) in filter {
            let values: Vec<&Value> = match v {
                Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            for x in values {
                match x {
                    Value::Number(n) => {
                        let Some(f) = n.as_f64() else { continue };
                        let m = self.nums.entry(field.clone()).or_default();
                        let key = ord_key(f);
                        if add {
                            m.entry(key).or_default().insert(slot);
                        } else if let Some(bm) = m.get_mut(&key) {
                            bm.remove(slot);
                            if bm.is_empty() {
                                m.remove(&key);
                            }
                        }
                    }
                    Value::String(_) | Value::Bool(_) => {
                        let key = match x {
                            Value::String(s) => cat_key_str(s),
                            Value::Bool(b) => cat_key_bool(*b),
                            _ => continue,
                        };
                        let m = self.cats.entry(field.clone()).or_default();
                        if add {
                            m.entry(key).or_default().insert(slot);
                        } else if let Some(bm) = m.get_mut(&key) {
                            bm.remove(slot);
                            if bm.is_empty() {
                                m.remove(&key);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Adds `slot`'s stored filter values to the postings.
    pub fn add(&mut self, slot: u32, filter: &Map<String, Value>) {
        self.edit(slot, filter, true);
    }

    /// Removes `slot`'s stored filter values from the postings.
    pub fn remove(&mut self, slot: u32, filter: &Map<String, Value>) {
        self.edit(slot, filter, false);
    }

    fn eq(&self, field: &str, s: &Scalar) -> RoaringBitmap {
        match s {
            Scalar::Num(x) => self
                .nums
                .get(field)
                .and_then(|m| m.get(&ord_key(*x)))
                .cloned()
                .unwrap_or_default(),
            Scalar::Cat(k) => self
                .cats
                .get(field)
                .and_then(|m| m.get(k))
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// The slots matching every condition of `f` (live or not: the caller intersects).
    pub fn eval(&self, f: &Filter) -> Option<RoaringBitmap> {
        let mut acc: Option<RoaringBitmap> = None;
        for c in &f.conds {
            let bm = match c {
                Cond::Eq(field, s) => self.eq(field, s),
                Cond::In(field, items) => {
                    let mut u = RoaringBitmap::new();
                    for s in items {
                        u |= self.eq(field, s);
                    }
                    u
                }
                Cond::Range(field, lo, hi) => {
                    let mut u = RoaringBitmap::new();
                    if let Some(m) = self.nums.get(field) {
                        for (_, bm) in m.range(ord_key(*lo)..=ord_key(*hi)) {
                            u |= bm;
                        }
                    }
                    u
                }
            };
            acc = Some(match acc {
                None => bm,
                Some(a) => a & bm,
            });
            if acc.as_ref().is_some_and(|a| a.is_empty()) {
                break;
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn idx() -> FilterIndex {
        let mut fi = FilterIndex::default();
        let rows = [
            json!({"city": "NY", "age": 30, "vip": true, "tags": ["a", "b"]}),
            json!({"city": "SF", "age": 18.5, "vip": false}),
            json!({"city": "NY", "age": -4}),
            json!({"city": "LA", "age": 65, "tags": ["b"]}),
        ];
        for (i, r) in rows.iter().enumerate() {
            fi.add(i as u32, r.as_object().unwrap());
        }
        fi
    }

    fn run(fi: &FilterIndex, f: serde_json::Value) -> Vec<u32> {
        fi.eval(&Filter::parse(&f).unwrap())
            .unwrap_or_default()
            .iter()
            .collect()
    }

    #[test]
    fn every_operator() {
        let fi = idx();
        assert_eq!(run(&fi, json!([{"city": {"$eq": "NY"}}])), vec![0, 2]);
        assert_eq!(run(&fi, json!([{"age": {"$eq": 30}}])), vec![0]);
        assert_eq!(run(&fi, json!([{"vip": {"$eq": true}}])), vec![0]);
        assert_eq!(run(&fi, json!([{"vip": {"$eq": false}}])), vec![1]);
        assert_eq!(
            run(&fi, json!([{"city": {"$in": ["SF", "LA"]}}])),
            vec![1, 3]
        );
        assert_eq!(run(&fi, json!([{"tags": {"$in": ["b"]}}])), vec![0, 3]);
        assert_eq!(
            run(&fi, json!([{"age": {"$range": [-4, 30]}}])),
            vec![0, 1, 2]
        );
        assert_eq!(
            run(&fi, json!([{"age": {"$range": [18.5, 18.5]}}])),
            vec![1]
        );
        // -0 is 0: [0, -0] and [-0, 0] are the range [0, 0], not a reversed one (a panic once).
        assert_eq!(
            run(&fi, json!([{"age": {"$range": [0, -0.0]}}])),
            run(&fi, json!([{"age": {"$range": [-0.0, 0]}}]))
        );
        assert_eq!(
            run(
                &fi,
                json!([{"city": {"$eq": "NY"}}, {"age": {"$range": [0, 100]}}])
            ),
            vec![0]
        );
        assert_eq!(
            run(&fi, json!([{"city": {"$eq": "nowhere"}}])),
            Vec::<u32>::new()
        );
        assert_eq!(
            run(&fi, json!([{"missing": {"$eq": 1}}])),
            Vec::<u32>::new()
        );
        // string "30" is not the number 30
        assert_eq!(run(&fi, json!([{"age": {"$eq": "30"}}])), Vec::<u32>::new());
    }

    #[test]
    fn remove_drops_postings() {
        let mut fi = idx();
        fi.remove(
            0,
            json!({"city": "NY", "age": 30, "vip": true, "tags": ["a", "b"]})
                .as_object()
                .unwrap(),
        );
        assert_eq!(run(&fi, json!([{"city": {"$eq": "NY"}}])), vec![2]);
        assert_eq!(run(&fi, json!([{"tags": {"$in": ["a", "b"]}}])), vec![3]);
    }

    #[test]
    fn every_error() {
        let cases = [
            (json!({"city": {"$eq": "NY"}}), "must be an array"),
            (json!([{"a": {"$eq": 1}, "b": {"$eq": 2}}]), "single-field"),
            (json!([{}]), "single-field"),
            (json!(["x"]), "single-field"),
            (json!([{"a": {"$eq": 1, "$in": [1]}}]), "operator must be"),
            (json!([{"a": 5}]), "operator must be"),
            (json!([{"a": {"$gt": 1}}]), "unsupported operator: $gt"),
            (json!([{"a": {"$in": 1}}]), "expected an array"),
            (json!([{"a": {"$range": [1]}}]), "exactly 2"),
            (json!([{"a": {"$range": ["x", 2]}}]), "exactly 2"),
            (json!([{"a": {"$range": [3, 2]}}]), "start 3 > end 2"),
            (json!([{"a": {"$eq": null}}]), "expected a string"),
            (json!([{"a": {"$eq": [1]}}]), "expected a string"),
            (json!([{"a": {"$eq": "x".repeat(256)}}]), "too long"),
        ];
        for (f, want) in cases {
            let e = Filter::parse(&f).unwrap_err().to_string();
            assert!(e.contains(want), "{f}: {e}");
        }
        assert!(matches!(Filter::parse_str("[{"), Err(FilterError::Json(_))));
        assert!(parse_stored("[1]").is_err());
        assert!(parse_stored("{\"a\":1}").is_ok());
        assert!(parse_stored("").unwrap().is_empty());
    }
}
