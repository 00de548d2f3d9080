//! Endee's `/api/v2` databases and tokens: the root token administers databases, their
//! collections and tokens; a database token manages its own tokens (`/tokens`). Rules and
//! token digests are the core's (`cairn_core::control::tenants`); deleting a database deletes
//! its collections and archives first (refused, like any delete, while a job uses one).

use crate::db::{Db, DbError};
use crate::fsutil::now_ms;
use crate::http::{ApiResult, AppState, St, bad, blocking};
use crate::http_v2::{Scope, collections_in};
use crate::openapi as doc;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use cairn_core::control::tenants::{Caller, TenantDb, TokenKind};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use utoipa_axum::{router::OpenApiRouter, routes};

/// The admin and token routes (inside `/api/v2`, behind auth).
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(create_db, list_dbs))
        .routes(routes!(delete_db))
        .routes(routes!(activate))
        .routes(routes!(deactivate))
        .routes(routes!(set_type))
        .routes(routes!(db_collections))
        .routes(routes!(delete_db_collection))
        .routes(routes!(all_collections))
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(delete_token))
        .routes(routes!(db_info))
        .routes(routes!(create_my_token, list_my_tokens))
        .routes(routes!(delete_my_token))
}

fn root(c: &Caller) -> Result<(), DbError> {
    match c {
        Caller::Root => Ok(()),
        Caller::Db { .. } => Err(DbError::Forbidden("this route needs the root token".into())),
    }
}

/// The caller's own database (a database token), or 403.
fn own(c: &Caller, write: bool) -> Result<String, DbError> {
    match c {
        Caller::Db { db, read_only } if !(write && *read_only) => Ok(db.clone()),
        Caller::Db { .. } => Err(DbError::Forbidden("this token is read-only".into())),
        Caller::Root => Err(DbError::Forbidden(
            "this route needs a database token (the root token uses /admin/dbs/{db}/tokens)".into(),
        )),
    }
}

/// 32 hex characters of OS entropy.
fn secret() -> Result<String, DbError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| DbError::Internal(format!("no entropy: {e}")))?;
    Ok(hex::encode(b))
}

fn db_json(d: &TenantDb) -> Value {
    json!({"db_name": d.db_name, "db_type": d.db_type, "is_active": d.is_active, "created_at": d.created_at / 1000})
}

#[derive(Deserialize)]
struct CreateDb {
    db_name: Option<String>,
    db_type: Option<String>,
}

#[utoipa::path(post, path = "/admin/dbs", tag = "admin", summary = "Create a database (answers its first token, once)", request_body(content = doc::CreateDatabaseBody, content_type = "application/json"), responses((status = 201, description = "The database and its token", body = Value)))]
async fn create_db(
    State(s): St,
    Extension(c): Extension<Caller>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    root(&c)?;
    let b: CreateDb = serde_json::from_slice(&body).map_err(|_| bad("Invalid JSON"))?;
    let name = b.db_name.ok_or_else(|| bad("Missing db_name"))?;
    let ty = b
        .db_type
        .unwrap_or_else(|| "enterprise".into())
        .to_lowercase();
    let secret = secret()?;
    let token =
        s.db.tenants_change(|t| t.create_db(&name, &ty, now_ms(), &secret))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"db_name": name, "db_type": ty, "db_token": token})),
    )
        .into_response())
}

#[utoipa::path(get, path = "/admin/dbs", tag = "admin", summary = "List databases", responses((status = 200, description = "The databases", body = Value)))]
async fn list_dbs(State(s): St, Extension(c): Extension<Caller>) -> ApiResult<Json<Value>> {
    root(&c)?;
    let dbs: Vec<Value> = crate::db::lock(&s.db.tenants).list().map(db_json).collect();
    Ok(Json(json!({ "dbs": dbs })))
}

#[utoipa::path(get, path = "/dbs/{db}/info", tag = "admin", summary = "Describe a database (its own token, or root)", params(("db" = String, Path, description = "Database name")), responses((status = 200, description = "The database", body = Value)))]
async fn db_info(
    State(s): St,
    Extension(c): Extension<Caller>,
    Path(db): Path<String>,
) -> ApiResult<Json<Value>> {
    if !matches!(&c, Caller::Db { db: own, .. } if *own == db) {
        root(&c)?;
    }
    let mut v = db_json(
        crate::db::lock(&s.db.tenants)
            .get(&db)
            .map_err(DbError::from)?,
    );
    v["collections"] = json!(collections_in(&s.db, &Scope::of(&db)).len());
    Ok(Json(v))
}

/// Deletes database `db`'s collections and archives, then the database.
/// Deletes database `name`: its collections, its archives, then its record. Every
/// collection and archive is checked first (409 naming the job that uses one, nothing
/// deleted); then the database is deactivated, so its tokens start nothing more while the
/// deletes run (a delete that still fails leaves it deactivated, to be deleted again).
fn drop_db(db: &Db, name: &str) -> Result<(), DbError> {
    crate::db::lock(&db.tenants).get(name)?;
    let scope = Scope::of(name);
    let collections = collections_in(db, &scope);
    let archives: Vec<String> = db
        .backup_names()
        .into_iter()
        .filter(|b| scope.show(b).is_some())
        .collect();
    let prefix = cairn_core::control::tenants::scoped(Some(name), "");
    crate::db::lock(&db.engine).check_deletable(&collections, &archives, &prefix)?;
    db.tenants_change(|t| t.set_active(name, false))?;
    for c in collections {
        db.delete_index(&c)?;
    }
    for b in archives {
        // An earlier chain deletion may have taken it already.
        if db.backup_names().contains(&b) {
            db.delete_backup(&b, true)?;
        }
    }
    db.tenants_change(|t| t.delete_db(name).map(|_| ()))
}

#[utoipa::path(delete, path = "/admin/dbs/{db}", tag = "admin", summary = "Delete a database, its collections and archives", params(("db" = String, Path, description = "Database name")), responses((status = 200, description = "Deleted", body = Value)))]
async fn delete_db(
    State(s): St,
    Extension(c): Extension<Caller>,
    Path(db): Path<String>,
) -> ApiResult<Json<Value>> {
    root(&c)?;
    let d = s.db.clone();
    let name = db.clone();
    blocking(move || drop_db(&d, &name)).await?;
    Ok(Json(json!({"message": "Database deleted", "db_name": db})))
}

async fn set_active(s: &Arc<AppState>, c: &Caller, db: &str, on: bool) -> ApiResult<Json<Value>> {
    root(c)?;
    s.db.tenants_change(|t| t.set_active(db, on))?;
    Ok(Json(json!({"db_name": db, "is_active": on})))
}

#[utoipa::path(post, path = "/admin/dbs/{db}/activate", tag = "admin", summary = "Activate a database", params(("db" = String, Path, description = "Database name")), responses((status = 200, description = "Active", body = Value)))]
async fn activate(
    State(s): St,
    Extension(c): Extension<Caller>,
    Path(db): Path<String>,
) -> ApiResult<Json<Value>> {
    set_active(&s, &c, &db, true).await
}

#[utoipa::path(post, path = "/admin/dbs/{db}/deactivate", tag = "admin", summary = "Deactivate a database (its tokens are refused)", params(("db" = String, Path, description = "Database name")), responses((status = 200, description = "Inactive", body = Value)))]
async fn deactivate(
    State(s): St,
    Extension(c): Extension<Caller>,
    Path(db): Path<String>,
) -> ApiResult<Json<Value>> {
    set_active(&s, &c, &db, false).await
}

#[derive(Deserialize)]
struct TypeBody {
    db_type: Option<String>,
}

#[utoipa::path(put, path = "/admin/dbs/{db}/type", tag = "admin", summary = "Set a database's type label", params(("db" = String, Path, description = "Database name")), request_body(content = doc::DatabaseTypeBody, content_type = "application/json"), responses((status = 200, description = "Set", body = Value)))]
async fn set_type(
    State(s): St,
    Extension(c): Extension<Caller>,
    Path(db): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    root(&c)?;
    let b: TypeBody = serde_json::from_slice(&body).map_err(|_| bad("Invalid JSON"))?;
    let ty = b
        .db_type
        .ok_or_else(|| bad("Missing db_type"))?
        .to_lowercase();
    s.db.tenants_change(|t| t.set_type(&db, &ty))?;
    Ok(Json(json!({"db_name": db, "db_type": ty})))
}

fn names_in(db: &Db, scope: &Scope) -> Vec<String> {
    collections_in(db, scope)
        .iter()
        .filter_map(|n| scope.show(n).map(String::from))
        .collect()
}

#[utoipa::path(get, path = "/admin/dbs/{db}/collection", tag = "admin", summary = "A database's collections", params(("db" = String, Path, description = "Database name")), responses((status = 200, description = "Their names", body = Value)))]
async fn db_collections(
    State(s): St,
    Extension(c): Extension<Caller>,
    Path(db): Path<String>,
) -> ApiResult<Json<Value>> {
    root(&c)?;
    crate::db::lock(&s.db.tenants)
        .get(&db)
        .map_err(DbError::from)?;
    Ok(Json(
        json!({"collections": names_in(&s.db, &Scope::of(&db))}),
    ))
}

#[utoipa::path(get, path = "/admin/collection", tag = "admin", summary = "Every database's collections", responses((status = 200, description = "Grouped by database", body = Value)))]
async fn all_collections(State(s): St, Extension(c): Extension<Caller>) -> ApiResult<Json<Value>> {
    root(&c)?;
    let dbs: Vec<String> = crate::db::lock(&s.db.tenants)
        .list()
        .map(|d| d.db_name.clone())
        .collect();
    // The root token's own namespace (and /api/v1's) is listed with `db_name` null.
    let mut out = vec![json!({"db_name": null, "collections": names_in(&s.db, &Scope::root())})];
    for d in dbs {
        out.push(json!({"db_name": d, "collections": names_in(&s.db, &Scope::of(&d))}));
    }
    Ok(Json(json!({ "collections": out })))
}

#[utoipa::path(delete, path = "/admin/dbs/{db}/collection/{c}", tag = "admin", summary = "Delete a collection of a database", params(("db" = String, Path, description = "Database name"), ("c" = String, Path, description = "Collection name")), responses((status = 200, description = "Deleted", body = Value)))]
async fn delete_db_collection(
    State(s): St,
    Extension(c): Extension<Caller>,
    Path((db, coll)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    root(&c)?;
    crate::db::lock(&s.db.tenants)
        .get(&db)
        .map_err(DbError::from)?;
    let name = Scope::of(&db).name(&coll)?;
    let d = s.db.clone();
    blocking(move || d.delete_index(&name)).await?;
    Ok(Json(json!({"message": "Collection deleted"})))
}

#[derive(Deserialize)]
struct TokenBody {
    name: Option<String>,
    token_type: Option<String>,
}

fn new_token(s: &AppState, db: &str, body: &[u8]) -> Result<Value, DbError> {
    let b: TokenBody =
        serde_json::from_slice(body).map_err(|_| DbError::BadRequest("Invalid JSON".into()))?;
    let name = b
        .name
        .ok_or_else(|| DbError::BadRequest("Missing token name".into()))?;
    let ty = b.token_type.unwrap_or_else(|| "rw".into());
    let kind = TokenKind::parse(&ty)
        .ok_or_else(|| DbError::BadRequest("token_type must be \"rw\" or \"r\"".into()))?;
    let secret = secret()?;
    let token =
        s.db.tenants_change(|t| t.create_token(db, &name, kind, now_ms(), &secret))?;
    Ok(json!({"db_name": db, "name": name, "token_type": ty, "db_token": token}))
}

fn tokens_of(s: &AppState, db: &str) -> Result<Value, DbError> {
    let t = crate::db::lock(&s.db.tenants);
    let list: Vec<Value> = t
        .get(db)?
        .tokens
        .iter()
        .map(|k| json!({"name": k.name, "token_type": k.token_type, "created_at": k.created_at / 1000}))
        .collect();
    Ok(json!({ "tokens": list }))
}

#[utoipa::path(post, path = "/admin/dbs/{db}/tokens", tag = "admin", summary = "Create a token for a database (shown once)", params(("db" = String, Path, description = "Database name")), request_body(content = doc::TokenBody, content_type = "application/json"), responses((status = 201, description = "The token", body = Value)))]
async fn create_token(
    State(s): St,
    Extension(c): Extension<Caller>,
    Path(db): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    root(&c)?;
    Ok((StatusCode::CREATED, Json(new_token(&s, &db, &body)?)).into_response())
}

#[utoipa::path(get, path = "/admin/dbs/{db}/tokens", tag = "admin", summary = "A database's tokens (names and kinds)", params(("db" = String, Path, description = "Database name")), responses((status = 200, description = "The tokens", body = Value)))]
async fn list_tokens(
    State(s): St,
    Extension(c): Extension<Caller>,
    Path(db): Path<String>,
) -> ApiResult<Json<Value>> {
    root(&c)?;
    Ok(Json(tokens_of(&s, &db)?))
}

#[utoipa::path(delete, path = "/admin/dbs/{db}/tokens/{name}", tag = "admin", summary = "Delete a database's token", params(("db" = String, Path, description = "Database name"), ("name" = String, Path, description = "Token name")), responses((status = 200, description = "Deleted", body = Value)))]
async fn delete_token(
    State(s): St,
    Extension(c): Extension<Caller>,
    Path((db, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    root(&c)?;
    s.db.tenants_change(|t| t.delete_token(&db, &name))?;
    Ok(Json(json!({"message": "Token deleted", "name": name})))
}

#[utoipa::path(post, path = "/tokens", tag = "admin", summary = "Create a token for the caller's database", request_body(content = doc::TokenBody, content_type = "application/json"), responses((status = 201, description = "The token", body = Value)))]
async fn create_my_token(
    State(s): St,
    Extension(c): Extension<Caller>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let db = own(&c, true)?;
    Ok((StatusCode::CREATED, Json(new_token(&s, &db, &body)?)).into_response())
}

#[utoipa::path(get, path = "/tokens", tag = "admin", summary = "The caller's database's tokens", responses((status = 200, description = "The tokens", body = Value)))]
async fn list_my_tokens(State(s): St, Extension(c): Extension<Caller>) -> ApiResult<Json<Value>> {
    let db = own(&c, false)?;
    Ok(Json(tokens_of(&s, &db)?))
}

#[utoipa::path(delete, path = "/tokens/{name}", tag = "admin", summary = "Delete a token of the caller's database", params(("name" = String, Path, description = "Token name")), responses((status = 200, description = "Deleted", body = Value)))]
async fn delete_my_token(
    State(s): St,
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let db = own(&c, true)?;
    s.db.tenants_change(|t| t.delete_token(&db, &name))?;
    Ok(Json(json!({"message": "Token deleted", "name": name})))
}
