//! The OpenAPI 3.1 document of the HTTP API, served at `/api/v1/openapi.json`.
//!
//! Every route is registered through `utoipa_axum`'s `OpenApiRouter` with the
//! `#[utoipa::path]` attribute of its handler, so a route cannot be served without being in
//! the document. The request shapes below are what the decoders in `cairn_core::wire` /
//! `wire_v2` accept (they stay the single parser; these types only describe them). Every
//! operation also documents the error shape `{"error": …}` for the statuses any route may
//! answer ([`ErrorResponses`]); `tests/openapi` runs schemathesis against a live server to
//! check that no response leaves the document.
// The body types only describe what the core's decoders parse: nothing reads their fields.
#![allow(dead_code)]

use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Doc, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error answer: a JSON object with the reason.
#[derive(ToSchema)]
pub struct ErrorBody {
    /// What was wrong, for a person to read.
    pub error: String,
}

/// Bytes that are not JSON (msgpack bodies, tar archives).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(pub Vec<u8>);

/// `POST /api/v1/index/create`.
#[derive(ToSchema)]
pub struct CreateIndexBody {
    /// Index name: letters, digits, `_` and `-`, at most 48 characters.
    pub index_name: String,
    /// Vector dimension (2 to 10,000).
    pub dim: u32,
    /// `cosine` (default), `l2` or `ip`.
    pub space_type: Option<String>,
    /// HNSW `M` (4 to 128; 16 by default).
    #[schema(rename = "M")]
    pub m: Option<u32>,
    /// HNSW `ef_construction` (8 to 1,024; 128 by default).
    pub ef_con: Option<u32>,
    /// `float32`, `float16`, `int16`, `int8` (default) or `binary`.
    pub precision: Option<String>,
    /// Sparse dimension of a hybrid index (0: dense only).
    pub sparse_dim: Option<u32>,
    /// `default` or `endee_bm25` for a hybrid index.
    pub sparse_model: Option<String>,
}

/// One vector of `POST /api/v1/index/{name}/vector/insert` (a JSON array of them; msgpack
/// arrays of the same shape are accepted too).
#[derive(ToSchema)]
pub struct InsertItem {
    /// Vector id (unique in the index).
    pub id: String,
    /// The vector (`dim` finite numbers).
    pub vector: Vec<f32>,
    /// Metadata, stored and returned as given.
    pub meta: Option<Value>,
    /// Filter fields: a JSON object of the values filters test.
    pub filter: Option<Value>,
    /// Sparse part of a hybrid index: indices.
    pub sparse_indices: Option<Vec<u32>>,
    /// Sparse part of a hybrid index: values.
    pub sparse_values: Option<Vec<f32>>,
}

/// `POST /api/v1/index/{name}/search`; the answer is msgpack, as Endee's.
#[derive(ToSchema)]
pub struct SearchBody {
    /// Results wanted (1 to 4,096).
    pub k: u32,
    /// The query vector (absent for a sparse-only query).
    pub vector: Option<Vec<f32>>,
    /// Search beam (default 128).
    pub ef: Option<u32>,
    /// Return each result's vector.
    pub include_vectors: Option<bool>,
    /// A filter: `[{"field": {"$eq": value}}, …]` (all must hold).
    pub filter: Option<Value>,
    /// Sparse query: indices.
    pub sparse_indices: Option<Vec<u32>>,
    /// Sparse query: values.
    pub sparse_values: Option<Vec<f32>>,
}

/// A search hit as `?format=json` answers it.
#[derive(ToSchema)]
pub struct Hit {
    /// The vector's id.
    pub id: String,
    /// Endee's similarity (higher is better).
    pub similarity: f32,
    /// Its meta: the JSON value stored, else its text (`null` when empty).
    pub meta: Value,
    /// Its filter fields.
    pub filter: Value,
    /// Stored norm.
    pub norm: f32,
    /// Its values, when asked for (else empty).
    pub vector: Vec<f32>,
}

/// A page of `GET /api/v1/index/{name}/vectors`.
#[derive(ToSchema)]
pub struct VectorPage {
    /// Live vectors in the index.
    pub total: u64,
    /// Vectors skipped before this page.
    pub offset: u64,
    /// The page: `{id, meta, filter, norm, vector?}` each.
    pub vectors: Vec<Value>,
}

/// `POST /api/v1/index/{name}/vector/get`.
#[derive(ToSchema)]
pub struct VectorGetBody {
    /// The vector's id.
    pub id: String,
}

/// `DELETE /api/v1/index/{name}/vectors/delete`.
#[derive(ToSchema)]
pub struct DeleteByFilterBody {
    /// The filter selecting what to delete (an empty filter deletes nothing).
    pub filter: Value,
}

/// One update of `POST /api/v1/index/{name}/filters/update`.
#[derive(ToSchema)]
pub struct FilterUpdate {
    /// The vector's id.
    pub id: String,
    /// Its new filter fields.
    pub filter: Value,
}

/// `POST /api/v1/index/{name}/filters/update`.
#[derive(ToSchema)]
pub struct UpdateFiltersBody {
    /// The updates.
    pub updates: Vec<FilterUpdate>,
}

/// `POST /api/v1/index/{name}/backup` and `POST /api/v2/collection/{c}/backup`.
#[derive(ToSchema)]
pub struct BackupBody {
    /// Archive name (letters, digits, `_`, `-`).
    pub name: String,
    /// A `--backup-target` to write to (default: the data directory's `backups/`).
    pub target: Option<String>,
    /// An archive on the same target this one continues (an incremental backup).
    pub incremental_from: Option<String>,
}

/// `POST /api/v1/backups/{name}/restore`.
#[derive(ToSchema)]
pub struct RestoreBody {
    /// The index to create from the archive.
    pub target_index_name: String,
    /// The `--backup-target` the archive is on.
    pub target: Option<String>,
    /// Answer 202 with the job at once instead of waiting for the restore.
    #[schema(rename = "async")]
    pub run_async: Option<bool>,
}

/// `POST /api/v1/index/{name}/rebuild`.
#[derive(ToSchema)]
pub struct RebuildBody {
    /// New HNSW `M` (absent: keep).
    #[schema(rename = "M")]
    pub m: Option<u32>,
    /// New `ef_construction` (absent: keep).
    pub ef_con: Option<u32>,
}

/// A field of `POST /api/v2/collection`.
#[derive(ToSchema)]
pub struct FieldSpec {
    /// Field name (unique in the collection).
    pub name: String,
    /// `vector`, `sparse` or `multi_vector`.
    #[schema(rename = "type")]
    pub kind: String,
    /// Dense fields: `{dimension, space_type, precision, M, ef_con}` (+ `pooling` for
    /// `multi_vector`: `mean` or `max`).
    pub params: Option<Value>,
    /// Sparse fields: `default` or `endee_bm25`.
    pub sparse_model: Option<String>,
}

/// `POST /api/v2/collection`.
#[derive(ToSchema)]
pub struct CreateCollectionBody {
    /// Collection name (at most 48 characters, no leading `__`).
    pub name: String,
    /// Its fields: one `vector` field first, further `vector` / `multi_vector` fields, at
    /// most one `sparse` field.
    pub fields: Vec<FieldSpec>,
}

/// `POST /api/v2/collection/{c}/objects/query`.
#[derive(ToSchema)]
pub struct ObjectIdsBody {
    /// The objects' ids (1 to 10,000).
    pub ids: Vec<String>,
}

/// `POST /api/v2/collection/{c}/search`.
#[derive(ToSchema)]
pub struct CollectionSearchBody {
    /// One query per field: `{field: {query, limit, ef_search, filter, …}}`, or a list of
    /// such objects; each field answers its own ranked list.
    pub fields: Value,
}

/// One field of `POST /api/v2/collection/{c}/rebuild`.
#[derive(ToSchema)]
pub struct FieldRebuildSpec {
    /// A dense field's name (sparse fields are skipped).
    pub field: String,
    /// New HNSW `M`.
    #[schema(rename = "M")]
    pub m: Option<u32>,
    /// New `ef_construction`.
    pub ef_con: Option<u32>,
}

/// `POST /api/v2/collection/{c}/rebuild`: one job for the fields, in order.
#[derive(ToSchema)]
pub struct CollectionRebuildBody {
    /// The fields to rebuild.
    pub fields: Vec<FieldRebuildSpec>,
}

/// `POST /api/v2/backup/{b}/restore`.
#[derive(ToSchema)]
pub struct CollectionRestoreBody {
    /// The collection to create.
    pub target_collection_name: String,
    /// The `--backup-target` the archive is on.
    pub target: Option<String>,
}

/// `POST /api/v2/admin/dbs`.
#[derive(ToSchema)]
pub struct CreateDatabaseBody {
    /// Database name.
    pub db_name: String,
    /// A label (`enterprise` by default).
    pub db_type: Option<String>,
}

/// `PUT /api/v2/admin/dbs/{db}/type`.
#[derive(ToSchema)]
pub struct DatabaseTypeBody {
    /// The new label.
    pub db_type: String,
}

/// `POST /api/v2/admin/dbs/{db}/tokens` and `POST /api/v2/tokens`.
#[derive(ToSchema)]
pub struct TokenBody {
    /// Token name (unique in its database).
    pub name: String,
    /// `rw` (default) or `r`.
    pub token_type: Option<String>,
}

/// Adds what every operation may answer besides its own responses: the error shape for
/// bad input, auth, missing things, conflicts, size limits and a server still loading; and
/// the `Authorization` token scheme.
pub struct ErrorResponses;

/// Statuses any route may answer with [`ErrorBody`].
const ERROR_STATUSES: [(&str, &str); 8] = [
    ("400", "Bad input: the reason says what"),
    ("401", "No token, or a wrong one"),
    ("403", "The token may not do this"),
    ("404", "No such index, collection, archive or job"),
    ("405", "Method not allowed on this route"),
    (
        "409",
        "A rule refuses it now (a job uses the index, the name is taken, …)",
    ),
    ("413", "Body over the size limit"),
    ("503", "The index is loading or damaged"),
];

impl Modify for ErrorResponses {
    fn modify(&self, doc: &mut Doc) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("Authorization"))),
        );
        for item in doc.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                for (status, why) in ERROR_STATUSES {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| {
                            ResponseBuilder::new()
                                .description(why)
                                .content(
                                    "application/json",
                                    ContentBuilder::new()
                                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                                        .build(),
                                )
                                .build()
                                .into()
                        });
                }
            }
        }
    }
}

/// The document's fixed parts; the paths come from the router (see [`document`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "CairnDB",
        description = "Endee-compatible vector database: /api/v1 (indexes, vectors, hybrid \
                       search, rebuild, backups) and /api/v2 (collections, databases, tokens).",
        license(name = "Apache-2.0")
    ),
    security(("token" = [])),
    components(schemas(
        ErrorBody, Binary, CreateIndexBody, InsertItem, SearchBody, Hit, VectorPage, VectorGetBody,
        DeleteByFilterBody, FilterUpdate, UpdateFiltersBody, BackupBody, RestoreBody,
        RebuildBody, FieldSpec, CreateCollectionBody, ObjectIdsBody, CollectionSearchBody,
        FieldRebuildSpec, CollectionRebuildBody, CollectionRestoreBody, CreateDatabaseBody,
        DatabaseTypeBody, TokenBody
    )),
    tags(
        (name = "v1", description = "Endee's /api/v1: indexes, vectors, search, rebuild, backups"),
        (name = "v2", description = "Endee's /api/v2: collections, objects, jobs"),
        (name = "admin", description = "Databases and tokens (/api/v2)"),
        (name = "operations", description = "Health, metrics, probes, this document")
    )
)]
pub struct ApiDoc;

/// Where the document itself is served (no token needed).
pub const DOCUMENT_PATH: &str = "/api/v1/openapi.json";

/// The whole document: [`ApiDoc`] with the router's paths and its own, operation ids made
/// unique across the two APIs (v2 and admin ones get a `v2_` prefix), then
/// [`ErrorResponses`].
pub fn document(paths: Doc) -> Doc {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
    let mut doc = ApiDoc::openapi().merge_from(paths);
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
        ];
        for op in ops.into_iter().flatten() {
            let v2 = op.tags.iter().flatten().any(|t| t == "v2" || t == "admin");
            if let (true, Some(id)) = (v2, op.operation_id.as_mut()) {
                *id = format!("v2_{id}");
            }
        }
    }
    let own = OperationBuilder::new()
        .tag("operations")
        .summary(Some("This document (no token)"))
        .operation_id(Some("openapi"))
        .security(utoipa::openapi::security::SecurityRequirement::default())
        .response(
            "200",
            ResponseBuilder::new()
                .description("The OpenAPI 3.1 document")
                .content("application/json", ContentBuilder::new().build()),
        )
        .build();
    doc.paths
        .paths
        .insert(DOCUMENT_PATH.into(), PathItem::new(HttpMethod::Get, own));
    ErrorResponses.modify(&mut doc);
    doc
}
