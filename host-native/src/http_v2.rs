//! Endee's `/api/v2` routes (the official client `endee` 2.2.0) over the same database as
//! `/api/v1`: a collection is an index (see `cairn_core::wire_v2` for the mapping), its objects
//! are the index's vectors, and jobs are the same registry with the same rules. Decoding and
//! encoding are the core's; this module only routes.

use crate::db::{Db, DbError};
use crate::drive;
use crate::http::{
    ApiResult, AppState, St, backup_info, bad, blocking, download, job_json, msgpack, upload,
};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use cairn_core::wire_v2;
use cairn_core::{IndexError, Job, JobKind, JobStatus};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// The `/api/v2` routes (auth is layered on by the caller).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/collection", post(create).get(list))
        .route("/collection/{c}", get(describe).delete(drop_collection))
        .route(
            "/collection/{c}/objects",
            post(upsert).delete(delete_by_filter),
        )
        .route("/collection/{c}/objects/query", post(get_objects))
        .route("/collection/{c}/objects/{id}", delete(delete_object))
        .route("/collection/{c}/objects/{id}/field/{f}/links", get(links))
        .route("/collection/{c}/filters", post(update_filters))
        .route("/collection/{c}/search", post(search))
        .route("/collection/{c}/rebuild", post(rebuild))
        .route("/collection/{c}/shrink", post(shrink))
        .route("/collection/{c}/backup", post(backup))
        .route("/status/rebuild", get(status_rebuild))
        .route("/status/backup", get(status_backup))
        .route("/status/restore", get(status_restore))
        .route("/backup", get(list_backups))
        .route(
            "/backup/upload",
            post(upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/backup/{b}", delete(delete_backup))
        .route("/backup/{b}/info", get(backup_info))
        .route("/backup/{b}/restore", post(restore))
        .route("/backup/{b}/download", get(download))
}

fn collection(db: &Db, name: &str) -> Result<Value, DbError> {
    let h = db.handle(name)?;
    Ok(wire_v2::collection_json(
        name,
        &h.params(),
        db.created_at(name) / 1000,
        h.live_count(),
    ))
}

async fn create(State(s): St, body: axum::body::Bytes) -> ApiResult<Json<Value>> {
    let (name, p) = wire_v2::decode_create_collection(&body)?;
    let db = s.db.clone();
    Ok(Json(
        blocking(move || {
            db.create_index(&name, p)?;
            collection(&db, &name)
        })
        .await?,
    ))
}

async fn list(State(s): St) -> ApiResult<Json<Value>> {
    let db = s.db.clone();
    let all = blocking(move || {
        db.handles()
            .iter()
            .map(|h| collection(&db, &h.name))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    Ok(Json(json!({ "collections": all })))
}

async fn describe(State(s): St, Path(c): Path<String>) -> ApiResult<Json<Value>> {
    let db = s.db.clone();
    Ok(Json(blocking(move || collection(&db, &c)).await?))
}

async fn drop_collection(State(s): St, Path(c): Path<String>) -> ApiResult<Json<Value>> {
    let db = s.db.clone();
    blocking(move || db.delete_index(&c)).await?;
    Ok(Json(json!({"message": "Collection deleted"})))
}

async fn upsert(
    State(s): St,
    Path(c): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let db = s.db.clone();
    let n = blocking(move || {
        let p = db.handle(&c)?.params();
        let items = wire_v2::decode_objects(&body, &p).map_err(|e| DbError::BadRequest(e.0))?;
        drop(body);
        db.write(&c, |ix| ix.prepare_upsert(items))
    })
    .await?;
    Ok(Json(json!({ "upserted": n })))
}

async fn get_objects(
    State(s): St,
    Path(c): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
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

async fn delete_object(
    State(s): St,
    Path((c, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let db = s.db.clone();
    let id2 = id.clone();
    let n = blocking(move || db.write(&c, |ix| ix.prepare_delete(vec![id2]))).await?;
    if n == 0 {
        return Err(DbError::Index(IndexError::NotFound(id)).into());
    }
    Ok(Json(json!({ "deleted": id })))
}

async fn delete_by_filter(
    State(s): St,
    Path(c): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let filter = cairn_core::wire::decode_delete_by_filter(&body)?;
    let db = s.db.clone();
    let n = blocking(move || db.write(&c, |ix| ix.prepare_delete_by_filter(&filter))).await?;
    Ok(Json(json!({ "deleted": n })))
}

async fn update_filters(
    State(s): St,
    Path(c): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let updates = cairn_core::wire::decode_filter_updates(&body)?;
    let db = s.db.clone();
    let n = blocking(move || db.write(&c, |ix| ix.prepare_update_filters(updates))).await?;
    Ok(Json(json!({ "updated": n })))
}

async fn search(
    State(s): St,
    Path(c): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
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

async fn links(
    State(s): St,
    Path((c, id, f)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let db = s.db.clone();
    let (id2, f2) = (id.clone(), f.clone());
    let links = blocking(move || {
        let h = db.handle(&c)?;
        let p = h.params();
        if f2 != p.vector_field() {
            return Err(DbError::BadRequest(format!(
                "{f2:?} is not a vector field of this collection (sparse fields have no graph)"
            )));
        }
        match h.links_of(&id2) {
            Some(l) => Ok(l),
            None => Err(DbError::Index(IndexError::NotFound(id2))),
        }
    })
    .await?;
    Ok(Json(json!({ "id": id, "field": f, "links": links })))
}

async fn rebuild(
    State(s): St,
    Path(c): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let db = s.db.clone();
    let job = blocking(move || {
        let p = db.handle(&c)?.params();
        let (m, ef) = wire_v2::decode_rebuild(&body, &p).map_err(|e| DbError::BadRequest(e.0))?;
        drive::submit_rebuild(&db, &c, m, ef)
    })
    .await?;
    let mut v = rebuild_status_json(Some(&job), &s.db);
    v["fields_total"] = json!(1);
    Ok((StatusCode::ACCEPTED, Json(v)).into_response())
}

async fn shrink(State(s): St, Path(c): Path<String>) -> ApiResult<Json<Value>> {
    let db = s.db.clone();
    let n = blocking(move || db.shrink(&c)).await?;
    Ok(Json(json!({"status": "ok", "reclaimed_bytes": n})))
}

#[derive(Deserialize)]
struct NameBody {
    name: Option<String>,
}

async fn backup(
    State(s): St,
    Path(c): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let b: NameBody = serde_json::from_slice(&body).map_err(|_| bad("Invalid JSON"))?;
    let name = b.name.ok_or_else(|| bad("Missing backup name"))?;
    let db = s.db.clone();
    let job = blocking(move || drive::submit_backup(&db, &c, &name)).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "backup_name": job.backup_name,
            "status": "in_progress",
            "job_id": job.job_id,
        })),
    )
        .into_response())
}

async fn list_backups(State(s): St) -> Json<Value> {
    Json(json!(s.db.backup_names()))
}

async fn delete_backup(State(s): St, Path(b): Path<String>) -> ApiResult<Json<Value>> {
    let db = s.db.clone();
    blocking(move || db.delete_backup(&b)).await?;
    Ok(Json(json!({"message": "Backup deleted successfully"})))
}

#[derive(Deserialize)]
struct RestoreBody {
    target_collection_name: Option<String>,
}

async fn restore(
    State(s): St,
    Path(b): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let r: RestoreBody = serde_json::from_slice(&body).map_err(|_| bad("Invalid JSON"))?;
    let target = r
        .target_collection_name
        .ok_or_else(|| bad("Missing target_collection_name"))?;
    let db = s.db.clone();
    let job = blocking(move || drive::submit_restore(&db, &b, &target, false)).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "status": "running",
            "backup_name": job.backup_name,
            "target_collection_name": job.index_name,
            "job_id": job.job_id,
        })),
    )
        .into_response())
}

/// The newest job of `kind` (what Endee's per-database status routes report).
fn last_job(db: &Db, kind: JobKind) -> Option<Job> {
    db.jobs().into_iter().rev().find(|j| j.kind == kind)
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
/// cancelled one `failed` with the reason `cancelled`; `phase` says more.
fn status_json(j: Option<&Job>, active: &str) -> Value {
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
    v["status"] = json!(status);
    v["phase"] = json!(phase);
    v["percent_complete"] = json!(percent(j));
    v["error_message"] = json!(j.error);
    v["collection"] = json!(j.index_name);
    v
}

fn rebuild_status_json(j: Option<&Job>, db: &Db) -> Value {
    let mut v = status_json(j, "in_progress");
    if let Some(j) = j {
        let done = j.status == JobStatus::Completed;
        v["field"] = json!(
            db.handle(&j.index_name)
                .map(|h| h.params().vector_field().to_string())
                .unwrap_or_default()
        );
        v["fields_total"] = json!(1);
        v["fields_done"] = json!(u8::from(done));
        v["objects_processed"] = json!(j.bytes_done);
        v["total_objects"] = json!(j.bytes_total);
    }
    v
}

async fn status_rebuild(State(s): St) -> Json<Value> {
    let j = last_job(&s.db, JobKind::Rebuild);
    Json(rebuild_status_json(j.as_ref(), &s.db))
}

async fn status_backup(State(s): St) -> Json<Value> {
    Json(status_json(
        last_job(&s.db, JobKind::Backup).as_ref(),
        "running",
    ))
}

async fn status_restore(State(s): St) -> Json<Value> {
    Json(status_json(
        last_job(&s.db, JobKind::Restore).as_ref(),
        "running",
    ))
}
