//! Endee's `/api/v2` routes (the official client `endee` 2.2.0) over the same database as
//! `/api/v1`: a collection is an index (see `cairn_core::wire_v2` for the mapping), its objects
//! are the index's vectors, and jobs are the same registry with the same rules. Every name is
//! taken through the caller's [`Scope`]: a database token sees its database only. Decoding and
//! encoding are the core's; this module only routes.

use crate::db::{Db, DbError};
use crate::drive;
use crate::http::{
    ApiResult, AppState, St, TargetQuery, backup_info, bad, blocking, download, job_json, msgpack,
    target_of, upload,
};
use crate::openapi as doc;
use axum::Json;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use cairn_core::control::tenants::{Caller, scoped, unscoped};
use cairn_core::wire_v2;
use cairn_core::{IndexError, Job, JobKind, JobStatus};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

/// The `/api/v2` routes (auth is layered on by the caller).
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(describe, drop_collection))
        .routes(routes!(upsert, delete_by_filter))
        .routes(routes!(get_objects))
        .routes(routes!(delete_object))
        .routes(routes!(links))
        .routes(routes!(update_filters))
        .routes(routes!(search))
        .routes(routes!(rebuild))
        .routes(routes!(shrink))
        .routes(routes!(backup))
        .routes(routes!(status_rebuild))
        .routes(routes!(status_backup))
        .routes(routes!(status_restore))
        .routes(routes!(list_backups))
        .routes(routes!(upload_v2).layer(DefaultBodyLimit::disable()))
        .routes(routes!(delete_backup))
        .routes(routes!(backup_info_v2))
        .routes(routes!(restore))
        .routes(routes!(fetch))
        .merge(crate::http_admin::routes())
}

/// The namespace a request acts in: its database's (a database token), or the default one
/// (the root token). Every collection, archive and job name a handler touches goes through it.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    db: Option<String>,
    read_only: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Scope {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(match parts.extensions.get::<Caller>() {
            Some(Caller::Db { db, read_only }) => Scope {
                db: Some(db.clone()),
                read_only: *read_only,
            },
            _ => Scope::root(),
        })
    }
}

impl Scope {
    /// The default namespace, with every right.
    pub(crate) fn root() -> Self {
        Scope {
            db: None,
            read_only: false,
        }
    }

    /// Database `db`'s namespace, as the root token acting in it.
    pub(crate) fn of(db: &str) -> Self {
        Scope {
            db: Some(db.into()),
            read_only: false,
        }
    }

    /// The stored name of a user's collection or archive name (which may not contain `.`).
    pub(crate) fn name(&self, user: &str) -> Result<String, DbError> {
        cairn_core::params::validate_index_name(user)
            .map_err(|e| DbError::BadRequest(e.to_string()))?;
        Ok(scoped(self.db.as_deref(), user))
    }

    /// The user's name of a stored name, if it is in this namespace.
    pub(crate) fn show<'a>(&self, stored: &'a str) -> Option<&'a str> {
        unscoped(self.db.as_deref(), stored)
    }

    /// Refuses a read-only token.
    pub(crate) fn write(&self) -> Result<(), DbError> {
        if self.read_only {
            return Err(DbError::Forbidden("this token is read-only".into()));
        }
        Ok(())
    }
}

fn collection(db: &Db, scope: &Scope, stored: &str) -> Result<Value, DbError> {
    let h = db.handle(stored)?;
    let user = scope.show(stored).unwrap_or(stored);
    Ok(wire_v2::collection_json(
        user,
        &h.params(),
        db.created_at(stored) / 1000,
        h.live_count(),
    ))
}

/// The stored names of the collections in `scope`, sorted.
pub(crate) fn collections_in(db: &Db, scope: &Scope) -> Vec<String> {
    db.handles()
        .iter()
        .filter(|h| scope.show(&h.name).is_some())
        .map(|h| h.name.clone())
        .collect()
}

#[utoipa::path(post, path = "/collection", tag = "v2", summary = "Create a collection", request_body(content = doc::CreateCollectionBody, content_type = "application/json"), responses((status = 200, description = "The collection", body = Value)))]
async fn create(State(s): St, scope: Scope, body: axum::body::Bytes) -> ApiResult<Json<Value>> {
    scope.write()?;
    let (name, p) = wire_v2::decode_create_collection(&body)?;
    let name = scope.name(&name)?;
    let db = s.db.clone();
    Ok(Json(
        blocking(move || {
            db.create_index(&name, p)?;
            collection(&db, &scope, &name)
        })
        .await?,
    ))
}

#[utoipa::path(get, path = "/collection", tag = "v2", summary = "List collections", responses((status = 200, description = "The collections", body = Value)))]
async fn list(State(s): St, scope: Scope) -> ApiResult<Json<Value>> {
    let db = s.db.clone();
    let all = blocking(move || {
        collections_in(&db, &scope)
            .iter()
            .map(|n| collection(&db, &scope, n))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    Ok(Json(json!({ "collections": all })))
}

#[utoipa::path(get, path = "/collection/{c}", tag = "v2", summary = "Describe a collection", params(("c" = String, Path, description = "Collection name")), responses((status = 200, description = "Its fields and counts", body = Value)))]
async fn describe(State(s): St, scope: Scope, Path(c): Path<String>) -> ApiResult<Json<Value>> {
    let c = scope.name(&c)?;
    let db = s.db.clone();
    Ok(Json(blocking(move || collection(&db, &scope, &c)).await?))
}

#[utoipa::path(delete, path = "/collection/{c}", tag = "v2", summary = "Delete a collection", params(("c" = String, Path, description = "Collection name")), responses((status = 200, description = "Deleted", body = Value)))]
async fn drop_collection(
    State(s): St,
    scope: Scope,
    Path(c): Path<String>,
) -> ApiResult<Json<Value>> {
    scope.write()?;
    let c = scope.name(&c)?;
    let db = s.db.clone();
    blocking(move || db.delete_index(&c)).await?;
    Ok(Json(json!({"message": "Collection deleted"})))
}

#[utoipa::path(post, path = "/collection/{c}/objects", tag = "v2", summary = "Upsert objects (msgpack ObjectBatch or JSON)", params(("c" = String, Path, description = "Collection name")), request_body(content((doc::Binary = "application/msgpack"), (Value = "application/json"))), responses((status = 200, description = "How many were written", body = Value)))]
async fn upsert(
    State(s): St,
    scope: Scope,
    Path(c): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    scope.write()?;
    let c = scope.name(&c)?;
    let db = s.db.clone();
    let n = blocking(move || {
        let p = db.handle(&c)?.params();
        let items = wire_v2::decode_objects(&body, &p).map_err(|e| DbError::BadRequest(e.0))?;
        drop(body);
        db.write(&c, |ix| ix.prepare_upsert_objects(items))
    })
    .await?;
    Ok(Json(json!({ "upserted": n })))
}

#[utoipa::path(post, path = "/collection/{c}/objects/query", tag = "v2", summary = "Read objects by id", params(("c" = String, Path, description = "Collection name")), request_body(content = doc::ObjectIdsBody, content_type = "application/json"), responses((status = 200, description = "The objects as msgpack", body = doc::Binary, content_type = "application/msgpack")))]
async fn get_objects(
    State(s): St,
    scope: Scope,
    Path(c): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let c = scope.name(&c)?;
    let ids = wire_v2::decode_ids(&body)?;
    let db = s.db.clone();
    let bytes = blocking(move || {
        let h = db.handle(&c)?;
        let recs = h.get_many(&ids)?;
        Ok(wire_v2::encode_objects(&h.params(), &recs))
    })
    .await?;
    Ok(msgpack(bytes))
}

#[utoipa::path(delete, path = "/collection/{c}/objects/{id}", tag = "v2", summary = "Delete one object", params(("c" = String, Path, description = "Collection name"), ("id" = String, Path, description = "Object id")), responses((status = 200, description = "Deleted", body = Value)))]
async fn delete_object(
    State(s): St,
    scope: Scope,
    Path((c, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    scope.write()?;
    let c = scope.name(&c)?;
    let db = s.db.clone();
    let id2 = id.clone();
    let n = blocking(move || db.write(&c, |ix| ix.prepare_delete(vec![id2]))).await?;
    if n == 0 {
        return Err(DbError::Index(IndexError::NotFound(id)).into());
    }
    Ok(Json(json!({ "deleted": id })))
}

#[utoipa::path(delete, path = "/collection/{c}/objects", tag = "v2", summary = "Delete the objects a filter selects", params(("c" = String, Path, description = "Collection name")), request_body(content = doc::DeleteByFilterBody, content_type = "application/json"), responses((status = 200, description = "How many were deleted", body = Value)))]
async fn delete_by_filter(
    State(s): St,
    scope: Scope,
    Path(c): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    scope.write()?;
    let c = scope.name(&c)?;
    let filter = cairn_core::wire::decode_delete_by_filter(&body)?;
    let db = s.db.clone();
    let n = blocking(move || db.write(&c, |ix| ix.prepare_delete_by_filter(&filter))).await?;
    Ok(Json(json!({ "deleted": n })))
}

#[utoipa::path(post, path = "/collection/{c}/filters", tag = "v2", summary = "Replace objects' filter fields", params(("c" = String, Path, description = "Collection name")), request_body(content = doc::UpdateFiltersBody, content_type = "application/json"), responses((status = 200, description = "How many were updated", body = Value)))]
async fn update_filters(
    State(s): St,
    scope: Scope,
    Path(c): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    scope.write()?;
    let c = scope.name(&c)?;
    let updates = cairn_core::wire::decode_filter_updates(&body)?;
    let db = s.db.clone();
    let n = blocking(move || db.write(&c, |ix| ix.prepare_update_filters(updates))).await?;
    Ok(Json(json!({ "updated": n })))
}

#[utoipa::path(post, path = "/collection/{c}/search", tag = "v2", summary = "Search one or more fields (one ranked list each)", params(("c" = String, Path, description = "Collection name")), request_body(content = doc::CollectionSearchBody, content_type = "application/json"), responses((status = 200, description = "Results per field as msgpack", body = doc::Binary, content_type = "application/msgpack")))]
async fn search(
    State(s): St,
    scope: Scope,
    Path(c): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let c = scope.name(&c)?;
    let db = s.db.clone();
    let bytes = blocking(move || {
        let h = db.handle(&c)?;
        let reqs =
            wire_v2::decode_search(&body, &h.params()).map_err(|e| DbError::BadRequest(e.0))?;
        let mut out = Vec::with_capacity(reqs.len());
        for (field, req) in reqs {
            out.push((field, h.search(&req)?));
        }
        Ok(wire_v2::encode_search(&out))
    })
    .await?;
    Ok(msgpack(bytes))
}

#[utoipa::path(get, path = "/collection/{c}/objects/{id}/field/{f}/links", tag = "v2", summary = "An object's neighbours in a dense field's graph", params(("c" = String, Path, description = "Collection name"), ("id" = String, Path, description = "Object id"), ("f" = String, Path, description = "Dense field")), responses((status = 200, description = "The linked ids", body = Value)))]
async fn links(
    State(s): St,
    scope: Scope,
    Path((c, id, f)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let c = scope.name(&c)?;
    let db = s.db.clone();
    let (id2, f2) = (id.clone(), f.clone());
    let links = blocking(move || {
        let h = db.handle(&c)?;
        let p = h.params();
        let field = p.dense_field_number(&f2).ok_or_else(|| {
            DbError::BadRequest(format!(
                "{f2:?} is not a dense field of this collection (sparse fields have no graph)"
            ))
        })?;
        match h.links_of(field, &id2) {
            Some(l) => Ok(l),
            None => Err(DbError::Index(IndexError::NotFound(id2))),
        }
    })
    .await?;
    Ok(Json(json!({ "id": id, "field": f, "links": links })))
}

#[utoipa::path(post, path = "/collection/{c}/rebuild", tag = "v2", summary = "Rebuild dense fields' graphs (one job)", params(("c" = String, Path, description = "Collection name")), request_body(content = doc::CollectionRebuildBody, content_type = "application/json"), responses((status = 202, description = "The job, running", body = Value)))]
async fn rebuild(
    State(s): St,
    scope: Scope,
    Path(c): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    scope.write()?;
    let c = scope.name(&c)?;
    let db = s.db.clone();
    let job = blocking(move || {
        let p = db.handle(&c)?.params();
        let fields = wire_v2::decode_rebuild(&body, &p).map_err(|e| DbError::BadRequest(e.0))?;
        drive::submit_rebuild(&db, &c, &fields)
    })
    .await?;
    let v = rebuild_status_json(Some(&job), &s.db, &scope);
    Ok((StatusCode::ACCEPTED, Json(v)).into_response())
}

#[utoipa::path(post, path = "/collection/{c}/shrink", tag = "v2", summary = "Checkpoint and reclaim space", params(("c" = String, Path, description = "Collection name")), responses((status = 200, description = "Bytes reclaimed", body = Value)))]
async fn shrink(State(s): St, scope: Scope, Path(c): Path<String>) -> ApiResult<Json<Value>> {
    scope.write()?;
    let c = scope.name(&c)?;
    let db = s.db.clone();
    let n = blocking(move || db.shrink(&c)).await?;
    Ok(Json(json!({"status": "ok", "reclaimed_bytes": n})))
}

/// A collection backup: Endee's `{"name"}`, plus CairnDB's `target` (a `--backup-target`)
/// and `incremental_from` (a base on the same target), as on `/api/v1`.
#[derive(Deserialize)]
struct NameBody {
    name: Option<String>,
    target: Option<String>,
    incremental_from: Option<String>,
}

#[utoipa::path(post, path = "/collection/{c}/backup", tag = "v2", summary = "Start a backup job", params(("c" = String, Path, description = "Collection name")), request_body(content = doc::BackupBody, content_type = "application/json"), responses((status = 202, description = "The job, running", body = Value)))]
async fn backup(
    State(s): St,
    scope: Scope,
    Path(c): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    scope.write()?;
    let c = scope.name(&c)?;
    let b: NameBody = serde_json::from_slice(&body).map_err(|_| bad("Invalid JSON"))?;
    let user = b.name.ok_or_else(|| bad("Missing backup name"))?;
    let name = scope.name(&user)?;
    let base = b.incremental_from.map(|x| scope.name(&x)).transpose()?;
    let target = target_of(b.target);
    let db = s.db.clone();
    let job =
        blocking(move || drive::submit_backup(&db, &c, &name, target.as_deref(), base.as_deref()))
            .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "backup_name": user,
            "status": "in_progress",
            "job_id": job.job_id,
        })),
    )
        .into_response())
}

#[utoipa::path(get, path = "/backup", tag = "v2", summary = "List archives", params(("target" = Option<String>, Query, description = "A --backup-target (default: the data directory)")), responses((status = 200, description = "Archive names", body = Value)))]
async fn list_backups(
    State(s): St,
    scope: Scope,
    Query(q): Query<TargetQuery>,
) -> ApiResult<Json<Value>> {
    let all = match target_of(q.target) {
        None => s.db.backup_names(),
        Some(t) => {
            let db = s.db.clone();
            blocking(move || db.target_backups(&t))
                .await?
                .into_iter()
                .map(|r| r.name)
                .collect()
        }
    };
    let names: Vec<String> = all
        .iter()
        .filter_map(|b| scope.show(b).map(String::from))
        .collect();
    Ok(Json(json!(names)))
}

#[utoipa::path(delete, path = "/backup/{b}", tag = "v2", summary = "Delete an archive", params(("b" = String, Path, description = "Archive name"), ("target" = Option<String>, Query, description = "A --backup-target (default: the data directory)"), ("chain" = Option<bool>, Query, description = "Also delete the incremental backups that continue it")), responses((status = 200, description = "Deleted", body = Value)))]
async fn delete_backup(
    State(s): St,
    scope: Scope,
    Path(b): Path<String>,
    Query(q): Query<TargetQuery>,
) -> ApiResult<Json<Value>> {
    scope.write()?;
    let b = scope.name(&b)?;
    let db = s.db.clone();
    let chain = q.chain;
    match target_of(q.target) {
        None => blocking(move || db.delete_backup(&b, chain)).await?,
        Some(t) => blocking(move || db.delete_target_backup(&t, &b, chain)).await?,
    };
    Ok(Json(json!({"message": "Backup deleted successfully"})))
}

#[derive(Deserialize)]
struct DownloadQuery {
    db: Option<String>,
    target: Option<String>,
}

/// `?db=` lets the root token fetch a database's archive (Endee's client sends it).
#[utoipa::path(get, path = "/backup/{b}/download", tag = "v2", summary = "Download an archive (the token may come as ?token=)", params(("b" = String, Path, description = "Archive name"), ("db" = Option<String>, Query, description = "Root token: the database the archive is in"), ("target" = Option<String>, Query, description = "A --backup-target (default: the data directory)")), responses((status = 200, description = "The tar archive", body = doc::Binary, content_type = "application/x-tar")))]
async fn fetch(
    State(s): St,
    scope: Scope,
    Path(b): Path<String>,
    Query(q): Query<DownloadQuery>,
) -> ApiResult<Response> {
    let scope = match (&scope.db, q.db) {
        (None, Some(db)) => Scope::of(&db),
        _ => scope,
    };
    let on = Query(TargetQuery {
        target: q.target,
        chain: false,
    });
    download(State(s), scope, Path(b), on).await
}

/// Endee's `{"target_collection_name"}`, plus CairnDB's `target`: the backup target the
/// archive is on (default: the data directory).
#[derive(Deserialize)]
struct RestoreBody {
    target_collection_name: Option<String>,
    target: Option<String>,
}

#[utoipa::path(post, path = "/backup/{b}/restore", tag = "v2", summary = "Restore an archive into a new collection (a job)", params(("b" = String, Path, description = "Archive name")), request_body(content = doc::CollectionRestoreBody, content_type = "application/json"), responses((status = 202, description = "The job, running", body = Value)))]
async fn restore(
    State(s): St,
    scope: Scope,
    Path(b): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    scope.write()?;
    let r: RestoreBody = serde_json::from_slice(&body).map_err(|_| bad("Invalid JSON"))?;
    let user = r
        .target_collection_name
        .ok_or_else(|| bad("Missing target_collection_name"))?;
    let (b, target) = (scope.name(&b)?, scope.name(&user)?);
    let from = target_of(r.target);
    let db = s.db.clone();
    let job =
        blocking(move || drive::submit_restore(&db, &b, from.as_deref(), &target, false)).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "status": "running",
            "backup_name": scope.show(&job.backup_name),
            "target_collection_name": user,
            "job_id": job.job_id,
        })),
    )
        .into_response())
}

/// The newest job of `kind` in `scope` (what Endee's per-database status routes report).
fn last_job(db: &Db, scope: &Scope, kind: JobKind) -> Option<Job> {
    db.jobs()
        .into_iter()
        .rev()
        .find(|j| j.kind == kind && scope.show(&j.index_name).is_some())
}

fn percent(j: &Job) -> f64 {
    if j.status == JobStatus::Completed {
        100.0
    } else if j.bytes_total > 0 {
        (j.bytes_done as f64 * 100.0 / j.bytes_total as f64).min(100.0)
    } else {
        0.0
    }
}

/// Endee v2's status words: active jobs are `running` (`in_progress` for rebuilds), a
/// cancelled one `failed` with the reason `cancelled`; `phase` says more. Names are shown as
/// the caller knows them.
fn status_json(j: Option<&Job>, scope: &Scope, active: &str) -> Value {
    let Some(j) = j else {
        return json!({"status": "idle", "phase": "idle", "percent_complete": 0.0, "error_message": null});
    };
    let (status, phase) = match j.status {
        JobStatus::Queued => (active, "queued"),
        JobStatus::Running => (active, "running"),
        JobStatus::Cancelling => (active, "cancelling"),
        JobStatus::Completed => ("completed", "done"),
        JobStatus::Failed => ("failed", "failed"),
        JobStatus::Cancelled => ("failed", "cancelled"),
    };
    let mut v = job_json(j);
    let user = scope.show(&j.index_name).unwrap_or_default();
    v["status"] = json!(status);
    v["phase"] = json!(phase);
    v["percent_complete"] = json!(percent(j));
    v["error_message"] = json!(j.error);
    v["collection"] = json!(user);
    v["index_name"] = json!(user);
    v["index_id"] = json!(user);
    v["backup_name"] = json!(scope.show(&j.backup_name).unwrap_or_default());
    v
}

fn rebuild_status_json(j: Option<&Job>, db: &Db, scope: &Scope) -> Value {
    let mut v = status_json(j, scope, "in_progress");
    if let Some(j) = j {
        let done = j.status == JobStatus::Completed;
        let field = j.rebuild.map_or(0, |r| r.field);
        v["field"] = json!(
            db.handle(&j.index_name)
                .ok()
                .and_then(|h| h.params().dense_field_name(field).map(str::to_string))
                .unwrap_or_default()
        );
        v["fields_total"] = json!(j.rebuild_fields_total());
        v["fields_done"] = json!(if done {
            j.rebuild_fields_total()
        } else {
            j.rebuild_fields_done as usize
        });
        v["objects_processed"] = json!(j.bytes_done);
        v["total_objects"] = json!(j.bytes_total);
    }
    v
}

/// `/api/v2/health`: the v1 answer.
#[utoipa::path(get, path = "/health", tag = "v2", summary = "Liveness (no token)", responses((status = 200, description = "Up", body = Value)), security(()))]
pub(crate) async fn health_v2(s: St) -> Json<Value> {
    crate::http::health(s).await
}

/// `/api/v2/stats`: the v1 answer.
#[utoipa::path(get, path = "/stats", tag = "v2", summary = "Server counters (no token)", responses((status = 200, description = "Counters", body = Value)), security(()))]
pub(crate) async fn stats_v2(s: St) -> Json<Value> {
    crate::http::stats(s).await
}

/// `/api/v2/backup/upload`: the v1 upload in the caller's namespace.
#[utoipa::path(post, path = "/backup/upload", tag = "v2", summary = "Upload an archive (raw tar with ?name=, or multipart)", params(("name" = Option<String>, Query, description = "Archive name (raw tar bodies)")), request_body(content((doc::Binary = "application/x-tar"), (doc::Binary = "multipart/form-data"))), responses((status = 201, description = "Uploaded and verified", body = String, content_type = "text/plain")))]
async fn upload_v2(
    s: St,
    scope: Scope,
    q: Query<crate::http::UploadQuery>,
    headers: axum::http::HeaderMap,
    req: axum::extract::Request,
) -> ApiResult<Response> {
    upload(s, scope, q, headers, req).await
}

/// `/api/v2/backup/{b}/info`: the v1 answer in the caller's namespace.
#[utoipa::path(get, path = "/backup/{b}/info", tag = "v2", summary = "Describe and verify an archive", params(("b" = String, Path, description = "Archive name"), ("target" = Option<String>, Query, description = "A --backup-target (default: the data directory)")), responses((status = 200, description = "Its manifest, sizes and digest check", body = Value)))]
async fn backup_info_v2(
    s: St,
    scope: Scope,
    b: Path<String>,
    q: Query<TargetQuery>,
) -> ApiResult<Json<Value>> {
    backup_info(s, scope, b, q).await
}

#[utoipa::path(get, path = "/status/rebuild", tag = "v2", summary = "The database's newest rebuild", responses((status = 200, description = "Its status", body = Value)))]
async fn status_rebuild(State(s): St, scope: Scope) -> Json<Value> {
    let j = last_job(&s.db, &scope, JobKind::Rebuild);
    Json(rebuild_status_json(j.as_ref(), &s.db, &scope))
}

#[utoipa::path(get, path = "/status/backup", tag = "v2", summary = "The database's newest backup", responses((status = 200, description = "Its status", body = Value)))]
async fn status_backup(State(s): St, scope: Scope) -> Json<Value> {
    let j = last_job(&s.db, &scope, JobKind::Backup);
    Json(status_json(j.as_ref(), &scope, "running"))
}

#[utoipa::path(get, path = "/status/restore", tag = "v2", summary = "The database's newest restore", responses((status = 200, description = "Its status", body = Value)))]
async fn status_restore(State(s): St, scope: Scope) -> Json<Value> {
    let j = last_job(&s.db, &scope, JobKind::Restore);
    Json(status_json(j.as_ref(), &scope, "running"))
}
