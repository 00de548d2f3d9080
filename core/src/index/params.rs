//! Index parameters: what a user chooses when creating an index, with Endee's bounds.

use crate::sparse::SparseModel;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Smallest allowed dense dimension.
pub const MIN_DIM: usize = 2;
/// Largest allowed dense dimension (Endee's `MAX_DIMENSION`).
pub const MAX_DIM: usize = 16384;
/// Bounds of the HNSW `M` parameter.
pub const M_RANGE: (usize, usize) = (4, 512);
/// Bounds of `ef_con` (HNSW construction beam width).
pub const EF_CON_RANGE: (usize, usize) = (8, 4096);
/// Bounds of `k` in a search.
pub const K_RANGE: (usize, usize) = (1, 4096);
/// Default `M`, as Endee.
pub const DEFAULT_M: usize = 16;
/// Default `ef_con`, as Endee.
pub const DEFAULT_EF_CON: usize = 128;
/// Default search beam width, as Endee.
pub const DEFAULT_EF_SEARCH: usize = 128;
/// Largest sparse dimension accepted.
pub const MAX_SPARSE_DIM: u64 = 1 << 31;

/// The metric an index ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpaceType {
    /// Cosine similarity: vectors are normalised on insert, similarity is the dot product.
    Cosine,
    /// Euclidean: similarity reported as `1 - ‖q − v‖²` (Endee's clients show `distance = 1 - similarity`).
    L2,
    /// Inner product: similarity is the raw dot product.
    Ip,
}

impl SpaceType {
    /// Parses Endee's names (`cosine`, `l2`, `ip`), case-insensitively.
    pub fn parse(s: &str) -> Result<Self, ParamError> {
        match s.to_ascii_lowercase().as_str() {
            "cosine" => Ok(Self::Cosine),
            "l2" | "euclidean" => Ok(Self::L2),
            "ip" | "dot" | "inner_product" => Ok(Self::Ip),
            _ => Err(ParamError::Invalid {
                field: "space_type",
                allowed: "one of: cosine, l2, ip".into(),
                got: s.to_string(),
            }),
        }
    }
    /// Endee's name for the space.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cosine => "cosine",
            Self::L2 => "l2",
            Self::Ip => "ip",
        }
    }
}

/// How vectors are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 4 bytes per dimension, exact.
    Float32,
    /// 2 bytes per dimension (IEEE half).
    Float16,
    /// 2 bytes per dimension, symmetric per-vector scale.
    Int16,
    /// 1 byte per dimension, symmetric per-vector scale (Endee's default).
    Int8,
    /// 1 bit per dimension (sign), Hamming distance.
    Binary,
}

impl Precision {
    /// Parses Endee's names, including the `int8d`/`int16d` aliases the npm client sends.
    pub fn parse(s: &str) -> Result<Self, ParamError> {
        match s.to_ascii_lowercase().as_str() {
            "float32" => Ok(Self::Float32),
            "float16" => Ok(Self::Float16),
            "int16" | "int16d" => Ok(Self::Int16),
            // `int8e` (Endee 2.x) is int8 whose search re-ranks exactly: what int8 is here.
            "int8" | "int8d" | "int8e" => Ok(Self::Int8),
            "binary" | "binary2" => Ok(Self::Binary),
            _ => Err(ParamError::Invalid {
                field: "precision",
                allowed: "one of: binary, float16, float32, int16, int8, int8e".into(),
                got: s.to_string(),
            }),
        }
    }
    /// Endee's name for the precision.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Float32 => "float32",
            Self::Float16 => "float16",
            Self::Int16 => "int16",
            Self::Int8 => "int8",
            Self::Binary => "binary",
        }
    }
    /// Every precision, for tests and benchmarks.
    pub const ALL: [Precision; 5] = [
        Self::Float32,
        Self::Float16,
        Self::Int16,
        Self::Int8,
        Self::Binary,
    ];
}

/// A bad parameter: names the field, what is allowed, and what was given.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParamError {
    /// The value is outside its allowed set or range.
    #[error("invalid {field}: {got} (allowed: {allowed})")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// What is allowed, in words.
        allowed: String,
        /// What was given.
        got: String,
    },
}

fn check_range(field: &'static str, v: usize, (lo, hi): (usize, usize)) -> Result<(), ParamError> {
    if v < lo || v > hi {
        return Err(ParamError::Invalid {
            field,
            allowed: format!("{lo}..={hi}"),
            got: v.to_string(),
        });
    }
    Ok(())
}

/// The immutable parameters of an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexParams {
    /// Dense dimension.
    pub dim: usize,
    /// Ranking metric.
    pub space: SpaceType,
    /// HNSW links per node on upper layers (layer 0 has `2*m`).
    pub m: usize,
    /// HNSW construction beam width.
    pub ef_construction: usize,
    /// Storage precision.
    pub precision: Precision,
    /// Sparse dimension of indexes made before `sparse_model` (term ids below it); 0 for
    /// every new index.
    #[serde(default)]
    pub sparse_dim: u64,
    /// Endee's opaque `checksum` field, stored and echoed.
    #[serde(default = "default_checksum")]
    pub checksum: i64,
    /// How sparse parts are scored; `None` (with `sparse_dim` 0): dense only.
    #[serde(default)]
    pub sparse_model: SparseModel,
    /// The field names of a collection created through `/api/v2` (`None`: an index created
    /// through `/api/v1`, whose fields `/api/v2` calls [`V1_VECTOR_FIELD`] and
    /// [`V1_SPARSE_FIELD`]). Last, and left out when `None`: checkpoints encode params
    /// positionally, and every index made before collections keeps its bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<FieldNames>,
}

/// What `/api/v2` calls the dense field of an index created through `/api/v1`.
pub const V1_VECTOR_FIELD: &str = "dense";
/// What `/api/v2` calls the sparse field of a hybrid index created through `/api/v1`.
pub const V1_SPARSE_FIELD: &str = "sparse";

/// A collection's field names: its first dense vector field (the index's own vectors), its
/// sparse field if any, and its further dense fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldNames {
    /// The first `vector` field: the index's own vectors and graph. `None` for a collection of
    /// only sparse and `multi_vector` fields, whose index keeps vectors of dimension 0 and an
    /// unlinked graph (one node a slot, no links: nothing is ever searched there). `Some`
    /// encodes as the bare string, so checkpoints written before this was optional load.
    pub vector: Option<String>,
    /// The `sparse` field (hybrid collections).
    pub sparse: Option<String>,
    /// Further `vector` and `multi_vector` fields, each with its own vectors and graph.
    #[serde(default)]
    pub extra: Vec<ExtraFieldSpec>,
}

/// How a `multi_vector` field pools an object's vectors into the one its graph links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Element-wise mean.
    Mean,
    /// Element-wise maximum.
    Max,
}

/// Most vectors one object may hold in a `multi_vector` field.
pub const MAX_MULTI_VECTORS: usize = 1024;

/// A further dense field of a collection: a `vector` field (`pooling` `None`) or a
/// `multi_vector` field (a list of vectors per object, pooled for its graph, scored by late
/// interaction: the sum over query vectors of the best similarity among the object's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraFieldSpec {
    /// Field name.
    pub name: String,
    /// Dimension.
    pub dim: usize,
    /// Metric.
    pub space: SpaceType,
    /// Storage precision of the vectors its graph links. A `vector` field scores its
    /// candidates from its stored codes (int8 decodes to within about 1 % of the float32
    /// similarity); binary is refused there, since sign bits alone rank too coarsely. A
    /// `multi_vector` field may use any: it scores by late interaction over float32 members.
    pub precision: Precision,
    /// HNSW `M`.
    pub m: usize,
    /// HNSW `ef_construction`.
    pub ef_construction: usize,
    /// `Some` for a `multi_vector` field.
    pub pooling: Option<Pooling>,
}

impl ExtraFieldSpec {
    /// Checks bounds (as an index's) and the precision.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("dim", self.dim, (MIN_DIM, MAX_DIM))?;
        check_range("M", self.m, M_RANGE)?;
        check_range("ef_con", self.ef_construction, EF_CON_RANGE)?;
        if self.precision == Precision::Binary && self.pooling.is_none() {
            return Err(ParamError::Invalid {
                field: "precision",
                allowed: "float32, float16, int16 or int8 for a collection's second and further \
                          vector fields (binary: the first vector field or a multi_vector field)"
                    .into(),
                got: self.precision.as_str().into(),
            });
        }
        Ok(())
    }
}

fn default_checksum() -> i64 {
    -1
}

impl IndexParams {
    /// Parameters with Endee's defaults for everything but `dim` and `space`.
    pub fn new(dim: usize, space: SpaceType) -> Self {
        Self {
            dim,
            space,
            m: DEFAULT_M,
            ef_construction: DEFAULT_EF_CON,
            precision: Precision::Int8,
            sparse_dim: 0,
            checksum: -1,
            sparse_model: SparseModel::None,
            fields: None,
        }
    }
    /// The dense field's name as `/api/v2` shows it (`None`: a collection without one).
    pub fn vector_field(&self) -> Option<&str> {
        match &self.fields {
            None => Some(V1_VECTOR_FIELD),
            Some(f) => f.vector.as_deref(),
        }
    }
    /// The number [`SearchRequest::field`](crate::index::SearchRequest) and rebuilds use for
    /// the dense or `multi_vector` field `name`: 0 for the index's own, `i + 1` for further
    /// field `i`.
    pub fn dense_field_number(&self, name: &str) -> Option<usize> {
        if self.vector_field() == Some(name) {
            return Some(0);
        }
        self.extra_fields()
            .iter()
            .position(|e| e.name == name)
            .map(|i| i + 1)
    }
    /// The name of dense field `number` (see [`IndexParams::dense_field_number`]).
    pub fn dense_field_name(&self, number: usize) -> Option<&str> {
        match number {
            0 => self.vector_field(),
            n => self.extra_fields().get(n - 1).map(|e| e.name.as_str()),
        }
    }
    /// True when the index's own vectors are a field (every index but a collection of only
    /// sparse and `multi_vector` fields).
    pub fn has_vector(&self) -> bool {
        self.vector_field().is_some()
    }
    /// The further dense fields (empty for a v1 index).
    pub fn extra_fields(&self) -> &[ExtraFieldSpec] {
        self.fields.as_ref().map_or(&[], |f| &f.extra)
    }
    /// The sparse field's name as `/api/v2` shows it (`None`: dense only).
    pub fn sparse_field(&self) -> Option<&str> {
        if !self.is_hybrid() {
            return None;
        }
        Some(
            self.fields
                .as_ref()
                .and_then(|f| f.sparse.as_deref())
                .unwrap_or(V1_SPARSE_FIELD),
        )
    }
    /// True when vectors carry a sparse part (hybrid search).
    pub fn is_hybrid(&self) -> bool {
        self.sparse_model != SparseModel::None || self.sparse_dim > 0
    }
    /// How sparse parts are scored (a legacy `sparse_dim` index: dot product).
    pub fn scoring(&self) -> SparseModel {
        match self.sparse_model {
            SparseModel::None if self.sparse_dim > 0 => SparseModel::Default,
            m => m,
        }
    }
    /// Builder: set precision.
    pub fn with_precision(mut self, p: Precision) -> Self {
        self.precision = p;
        self
    }
    /// Builder: set `M` and `ef_construction`.
    pub fn with_hnsw(mut self, m: usize, ef_construction: usize) -> Self {
        self.m = m;
        self.ef_construction = ef_construction;
        self
    }
    /// Checks every bound; the error names the first field out of range.
    pub fn validate(&self) -> Result<(), ParamError> {
        if self.has_vector() {
            check_range("dim", self.dim, (MIN_DIM, MAX_DIM))?;
        } else if self.dim != 0 || self.precision != Precision::Float32 {
            return Err(ParamError::Invalid {
                field: "dim",
                allowed: "0 with float32 for a collection without a vector field".into(),
                got: format!("{} {}", self.dim, self.precision.as_str()),
            });
        } else if self.extra_fields().is_empty() && !self.is_hybrid() {
            return Err(ParamError::Invalid {
                field: "fields",
                allowed: "at least one vector, sparse or multi_vector field".into(),
                got: "none".into(),
            });
        }
        check_range("M", self.m, M_RANGE)?;
        check_range("ef_con", self.ef_construction, EF_CON_RANGE)?;
        for f in self.extra_fields() {
            f.validate()?;
        }
        if self.sparse_dim > MAX_SPARSE_DIM {
            return Err(ParamError::Invalid {
                field: "sparse_dim",
                allowed: format!("0..={MAX_SPARSE_DIM}"),
                got: self.sparse_dim.to_string(),
            });
        }
        Ok(())
    }
}

/// Checks a search's `k`.
pub fn validate_k(k: usize) -> Result<(), ParamError> {
    check_range("k", k, K_RANGE)
}

/// Index names: what is safe as a file-system component on every host.
pub fn validate_index_name(name: &str) -> Result<(), ParamError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ParamError::Invalid {
            field: "index_name",
            allowed: "1..=200 characters of [A-Za-z0-9_-]".into(),
            got: name.to_string(),
        })
    }
}

/// Names as stored: a user's index name, or `<database>.<name>` for a collection of a
/// database other than the default (see [`crate::control::tenants`]). Both parts follow
/// [`validate_index_name`], so a stored name is still one safe file-system component. Names
/// from users are checked with [`validate_index_name`]: no user can write the separator.
pub fn validate_stored_name(name: &str) -> Result<(), ParamError> {
    match name.split_once('.') {
        Some((db, rest)) => {
            validate_index_name(db)?;
            validate_index_name(rest)
        }
        None => validate_index_name(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_are_user_names_or_one_database_prefix() {
        for ok in ["a", "db.c", "a-b.c_d"] {
            assert!(validate_stored_name(ok).is_ok(), "{ok}");
        }
        for bad in [".c", "db.", "a.b.c", "..", "a/b.c", "db..c"] {
            assert!(validate_stored_name(bad).is_err(), "{bad}");
        }
        assert!(
            validate_index_name("db.c").is_err(),
            "users never name the separator"
        );
    }

    #[test]
    fn bounds_are_enforced_at_each_edge() {
        let base = IndexParams::new(8, SpaceType::L2);
        assert!(base.validate().is_ok());
        for (dim, ok) in [(1, false), (2, true), (16384, true), (16385, false)] {
            let p = IndexParams {
                dim,
                ..base.clone()
            };
            assert_eq!(p.validate().is_ok(), ok, "dim {dim}");
        }
        for (m, ok) in [(3, false), (4, true), (512, true), (513, false)] {
            let p = IndexParams { m, ..base.clone() };
            assert_eq!(p.validate().is_ok(), ok, "m {m}");
        }
        for (e, ok) in [(7, false), (8, true), (4096, true), (4097, false)] {
            let p = IndexParams {
                ef_construction: e,
                ..base.clone()
            };
            assert_eq!(p.validate().is_ok(), ok, "ef {e}");
        }
        let p = IndexParams {
            sparse_dim: MAX_SPARSE_DIM + 1,
            ..base.clone()
        };
        assert!(p.validate().is_err());
        for (k, ok) in [(0, false), (1, true), (4096, true), (4097, false)] {
            assert_eq!(validate_k(k).is_ok(), ok, "k {k}");
        }
    }

    #[test]
    fn errors_name_field_and_range() {
        let p = IndexParams {
            m: 2,
            ..IndexParams::new(8, SpaceType::L2)
        };
        let e = p.validate().unwrap_err().to_string();
        assert!(
            e.contains("M") && e.contains("4..=512") && e.contains('2'),
            "{e}"
        );
        let e = SpaceType::parse("hamming").unwrap_err().to_string();
        assert!(e.contains("space_type") && e.contains("cosine"), "{e}");
        let e = Precision::parse("int4").unwrap_err().to_string();
        assert!(e.contains("precision") && e.contains("int8"), "{e}");
    }

    #[test]
    fn names_and_aliases_parse() {
        assert_eq!(Precision::parse("int8d").unwrap(), Precision::Int8);
        assert_eq!(Precision::parse("INT16D").unwrap(), Precision::Int16);
        for p in Precision::ALL {
            assert_eq!(Precision::parse(p.as_str()).unwrap(), p);
        }
        for s in [SpaceType::Cosine, SpaceType::L2, SpaceType::Ip] {
            assert_eq!(SpaceType::parse(s.as_str()).unwrap(), s);
        }
        assert_eq!(
            IndexParams::new(4, SpaceType::Ip).precision,
            Precision::Int8
        );
    }

    #[test]
    fn index_names() {
        assert!(validate_index_name("a_b-1").is_ok());
        for bad in ["", "a/b", "..", "a b", &"x".repeat(201)] {
            assert!(validate_index_name(bad).is_err(), "{bad}");
        }
    }
}
