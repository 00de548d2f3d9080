//! Endee's `/api/v1` routes plus CairnDB's extensions, on axum (`/api/v2`: [`crate::http_v2`]).

use crate::db::{Db, DbError, lock};
use crate::drive;
use crate::fsutil::now_ms;
use crate::http_v2::Scope;
use crate::openapi as doc;
use crate::wire;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cairn_core::Fault;
use cairn_core::control::rebuild::FieldRebuild;
use cairn_core::control::tenants::{Caller, TenantError};
use cairn_core::control::upload::UploadTask;
use cairn_core::engine::EngineError;
use cairn_core::target::ArchiveTarget;
use cairn_core::{IndexError, Job, JobKind, JobStatus};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

/// Endee's fixed `lib_token` in index info.
const LIB_TOKEN: &str = "3a5f08c7d9e1b2a43a5f08c7d9e1b2a4";

/// Limits on what one request may bring.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body but uploads, in bytes.
    pub max_body: usize,
    /// Largest backup upload, in bytes.
    pub max_upload: u64,
    /// Free space an upload must leave on the data directory's file system, in bytes.
    pub upload_reserve: u64,
}

/// Shared server state.
pub struct AppState {
    /// The database.
    pub db: Arc<Db>,
    /// SHA-256 of the auth token (None: auth off). Requests compare digests in constant time,
    /// so neither the token's bytes nor its length show in the timing.
    token_digest: Option<[u8; 32]>,
    limits: Limits,
    started: Instant,
    requests: AtomicU64,
}

pub(crate) type St = State<Arc<AppState>>;

/// An error response: `{"error": "..."}` with the status the error deserves.
pub struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::SERVICE_UNAVAILABLE {
            // A loading index is ready in moments; a broken one needs a human, but a client
            // that retries once a second costs nothing.
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

pub(crate) fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

/// The HTTP status for a kind of error.
fn status_of(f: Fault) -> StatusCode {
    match f {
        Fault::BadInput => StatusCode::BAD_REQUEST,
        Fault::NotFound => StatusCode::NOT_FOUND,
        Fault::Conflict => StatusCode::CONFLICT,
        Fault::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Fault::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        let status = match &e {
            DbError::Engine(e) => status_of(e.fault()),
            DbError::Index(e) => status_of(e.fault()),
            DbError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            DbError::Io(_) | DbError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            DbError::Target(_) => StatusCode::BAD_GATEWAY,
            DbError::BadRequest(_) => StatusCode::BAD_REQUEST,
            DbError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            DbError::NoSpace(_) => StatusCode::INSUFFICIENT_STORAGE,
            DbError::Forbidden(_) => StatusCode::FORBIDDEN,
            DbError::Tenant(t) => match t {
                TenantError::Invalid(_) => StatusCode::BAD_REQUEST,
                TenantError::DbNotFound(_) | TenantError::TokenNotFound(_) => StatusCode::NOT_FOUND,
                TenantError::Exists(_) => StatusCode::CONFLICT,
                TenantError::Denied => StatusCode::UNAUTHORIZED,
                TenantError::Inactive(_) => StatusCode::FORBIDDEN,
            },
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "request failed");
        }
        ApiError(status, e.to_string())
    }
}

impl From<IndexError> for ApiError {
    fn from(e: IndexError) -> Self {
        DbError::Index(e).into()
    }
}

impl From<cairn_core::wire::WireError> for ApiError {
    fn from(e: cairn_core::wire::WireError) -> Self {
        bad(e.0)
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DbError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(ApiError::from)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

pub(crate) fn msgpack(bytes: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/msgpack")],
        bytes,
    )
        .into_response()
}

/// Builds the router.
pub fn router(
    db: Arc<Db>,
    token: Option<String>,
    playground: Option<std::path::PathBuf>,
    limits: Limits,
    cors_origins: &[String],
) -> Router {
    let state = Arc::new(AppState {
        db,
        token_digest: token.map(|t| sha2::Sha256::digest(t.as_bytes()).into()),
        limits,
        started: Instant::now(),
        requests: AtomicU64::new(0),
    });
    let api = OpenApiRouter::new()
        .routes(routes!(create_index))
        .routes(routes!(list_indexes))
        .routes(routes!(index_info))
        .routes(routes!(delete_index))
        .routes(routes!(search))
        .routes(routes!(list_vectors))
        .routes(routes!(insert))
        .routes(routes!(get_vector))
        .routes(routes!(delete_vector))
        .routes(routes!(delete_by_filter))
        .routes(routes!(update_filters))
        .routes(routes!(create_backup))
        .routes(routes!(rebuild))
        .routes(routes!(rebuild_status))
        .routes(routes!(list_backups))
        .routes(routes!(list_jobs))
        .routes(routes!(list_targets))
        .routes(routes!(list_schedules))
        .routes(routes!(get_job, cancel_job))
        .routes(routes!(upload).layer(DefaultBodyLimit::disable()))
        .routes(routes!(delete_backup))
        .routes(routes!(backup_info))
        .routes(routes!(download))
        .routes(routes!(restore))
        .route_layer(middleware::from_fn(root_only))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth))
        .routes(routes!(health))
        .routes(routes!(stats));
    let v2 = crate::http_v2::routes()
        .route_layer(middleware::from_fn_with_state(state.clone(), auth))
        .routes(routes!(crate::http_v2::health_v2))
        .routes(routes!(crate::http_v2::stats_v2));
    // Operations: metrics behind the root token (they name every index), the probes open.
    let ops = OpenApiRouter::new()
        .routes(routes!(crate::observe::metrics))
        .route_layer(middleware::from_fn(root_only))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth))
        .routes(routes!(crate::observe::livez))
        .routes(routes!(crate::observe::readyz));
    let (app, paths) = OpenApiRouter::new()
        .nest("/api/v1", api)
        .nest("/api/v2", v2)
        .merge(ops)
        .split_for_parts();
    // The document is open (no token), like the probes: it describes, it reveals nothing.
    let doc = Arc::new(crate::openapi::document(paths));
    let mut app = app.route(
        crate::openapi::DOCUMENT_PATH,
        get(move || {
            let doc = doc.clone();
            async move { Json(doc.as_ref().clone()) }
        }),
    );
    if let Some(dir) = playground {
        app = app.fallback_service(tower_http_serve(dir).with_state(state.clone()));
    }
    // Unknown routes answer axum's empty 404, which `json_errors` turns into JSON. Requests
    // are counted and logged as answered, after that rewrite.
    app.layer(middleware::from_fn_with_state(
        state.clone(),
        count_requests,
    ))
    .layer(middleware::from_fn(json_errors))
    .layer(middleware::from_fn(crate::observe::count_request))
    .layer(crate::observe::trace_layer())
    .layer(DefaultBodyLimit::max(limits.max_body))
    .layer(cors(cors_origins))
    .with_state(state)
}

/// Cross-origin access for browsers on other origins (`--cors-origin`, repeatable; `*` any):
/// outermost, so a preflight is answered before auth. None given: no CORS headers at all.
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, Any, CorsLayer};
    if origins.is_empty() {
        return CorsLayer::new();
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods(Any)
        .allow_headers(Any)
        .expose_headers([header::CONTENT_LENGTH, header::CONTENT_DISPOSITION])
        .max_age(std::time::Duration::from_secs(600))
}

/// Largest error body rewritten as JSON (rejections' texts are short).
const MAX_ERROR_TEXT: usize = 16 << 10;

/// Every error is `{"error": ...}` JSON: axum's own rejections (a path segment that is not
/// UTF-8, a body over the limit, a wrong method) answer plain text, rewritten here.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, MAX_ERROR_TEXT).await {
        Ok(b) if !b.is_empty() => String::from_utf8_lossy(&b).into_owned(),
        _ => parts
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_string(),
    };
    let mut out = ApiError(parts.status, text).into_response();
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

/// The playground's files: tower-http's `ServeDir` (`index.html` for `/`, a `.gz` twin
/// sent to a client that accepts gzip, `Last-Modified` / `If-Modified-Since` answered 304),
/// plus a weak `ETag` from each file's size and time so `If-None-Match` answers 304 too.
fn tower_http_serve(dir: std::path::PathBuf) -> Router<Arc<AppState>> {
    let files = tower_http::services::ServeDir::new(dir)
        .precompressed_br()
        .precompressed_gzip()
        .append_index_html_on_directories(true);
    Router::new()
        .fallback_service(files)
        .layer(middleware::from_fn(etag))
}

/// A weak validator for a static file: its length and modification time, as served.
async fn etag(req: Request, next: Next) -> Response {
    let asked = req.headers().get(header::IF_NONE_MATCH).cloned();
    let mut res = next.run(req).await;
    if res.status() != StatusCode::OK {
        return res;
    }
    let h = res.headers();
    let (Some(len), Some(modified)) = (h.get(header::CONTENT_LENGTH), h.get(header::LAST_MODIFIED))
    else {
        return res;
    };
    let enc = h
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    let tag = format!("W/\"{}-{:x}-{enc}\"", len.to_str().unwrap_or("0"), {
        use sha2::Digest;
        let d = sha2::Sha256::digest(modified.as_bytes());
        u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    });
    if asked.as_ref().and_then(|v| v.to_str().ok()) == Some(tag.as_str()) {
        let mut not_modified = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = tag.parse() {
            not_modified.headers_mut().insert(header::ETAG, v);
        }
        return not_modified;
    }
    if let Ok(v) = tag.parse() {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}

async fn count_requests(State(s): St, req: Request, next: Next) -> Response {
    s.requests.fetch_add(1, Ordering::Relaxed);
    next.run(req).await
}

async fn auth(State(s): St, mut req: Request, next: Next) -> Response {
    let given = request_token(&req);
    let tenants = || lock(&s.db.tenants).authenticate(&given);
    let caller = match &s.token_digest {
        Some(want) => {
            let digest: [u8; 32] = sha2::Sha256::digest(given.as_bytes()).into();
            let root: bool = subtle::ConstantTimeEq::ct_eq(&digest[..], &want[..]).into();
            if root {
                Caller::Root
            } else {
                match tenants() {
                    Ok(c) => c,
                    Err(e @ TenantError::Inactive(_)) => {
                        return ApiError(StatusCode::FORBIDDEN, e.to_string()).into_response();
                    }
                    Err(_) => {
                        let msg = if given.is_empty() {
                            "Authorization header required"
                        } else {
                            "Invalid token"
                        };
                        return ApiError(StatusCode::UNAUTHORIZED, msg.into()).into_response();
                    }
                }
            }
        }
        // No root token configured: the server is open, and acts as root, unless a valid
        // database token narrows the request to its database.
        None => match tenants() {
            Ok(c) => c,
            Err(e @ TenantError::Inactive(_)) => {
                return ApiError(StatusCode::FORBIDDEN, e.to_string()).into_response();
            }
            Err(_) => Caller::Root,
        },
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The token a request carries: `Authorization: <token>` or `Bearer <token>` (the scheme in
/// any case; Endee sends it bare), or on download routes `?token=` (a link has no header).
/// Nothing logs request URIs.
fn request_token(req: &Request) -> String {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim();
    let given = match given.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim_start(),
        _ => given,
    };
    if given.is_empty() && req.uri().path().ends_with("/download") {
        return Query::<std::collections::HashMap<String, String>>::try_from_uri(req.uri())
            .ok()
            .and_then(|q| q.0.get("token").cloned())
            .unwrap_or_default();
    }
    given.to_string()
}

/// `/api/v1` is the default namespace's: a database token is for `/api/v2` only.
async fn root_only(req: Request, next: Next) -> Response {
    if matches!(req.extensions().get::<Caller>(), Some(Caller::Db { .. })) {
        return ApiError(
            StatusCode::FORBIDDEN,
            "a database token works with /api/v2 only".into(),
        )
        .into_response();
    }
    next.run(req).await
}

/// Liveness: answers as soon as the server listens, while indexes may still load (`ready`
/// says whether they all have).
#[utoipa::path(get, path = "/health", tag = "v1", summary = "Liveness (no token)", responses((status = 200, description = "Up", body = Value)), security(()))]
pub(crate) async fn health(State(s): St) -> Json<Value> {
    Json(json!({"status": "ok", "timestamp": now_ms(), "ready": s.db.ready()}))
}

#[utoipa::path(get, path = "/stats", tag = "v1", summary = "Server counters (no token)", responses((status = 200, description = "Counters", body = Value)), security(()))]
pub(crate) async fn stats(State(s): St) -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime": s.started.elapsed().as_secs(),
        "total_requests": s.requests.load(Ordering::Relaxed),
    }))
}

#[utoipa::path(post, path = "/index/create", tag = "v1", summary = "Create an index", request_body(content = doc::CreateIndexBody, content_type = "application/json"), responses((status = 200, description = "Created", body = String, content_type = "text/plain")))]
async fn create_index(State(s): St, body: axum::body::Bytes) -> ApiResult<Response> {
    let (name, p) = cairn_core::wire::decode_create_index(&body)?;
    let db = s.db.clone();
    blocking(move || db.create_index(&name, p)).await?;
    Ok(text(StatusCode::OK, "Index created successfully"))
}

fn index_json(db: &Db, name: &str) -> Result<Value, DbError> {
    let h = db.handle(name)?;
    let ix = h
        .index
        .read()
        .map_err(|_| DbError::Internal("lock".into()))?;
    let p = ix.params();
    let created = db.created_at(name) / 1000;
    Ok(json!({
        "name": name,
        "index_name": name,
        "dimension": p.dim,
        "sparse_dim": p.sparse_dim,
        "sparse_model": p.scoring().as_str(),
        "space_type": p.space.as_str(),
        "precision": p.precision.as_str(),
        "total_elements": ix.len(),
        "checksum": p.checksum,
        "M": p.m,
        "ef_con": p.ef_construction,
        "lib_token": LIB_TOKEN,
        "created_at": created,
        // Vectors found by exact scan until they join the graph (after a start or restore).
        "pending_links": ix.pending_links(),
    }))
}

#[utoipa::path(get, path = "/index/list", tag = "v1", summary = "List indexes", responses((status = 200, description = "The indexes", body = Value)))]
async fn list_indexes(State(s): St) -> ApiResult<Json<Value>> {
    let db = s.db.clone();
    let list = blocking(move || {
        let mut list = db
            .handles()
            .iter()
            .map(|h| {
                index_json(&db, &h.name).map(|mut v| {
                    v["state"] = json!("ready");
                    v
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Indexes that failed to load are listed with why, so an operator sees them.
        for (name, reason) in db.unavailable_indexes() {
            list.push(match reason {
                Some(why) => {
                    json!({"name": name, "index_name": name, "state": "failed", "error": why})
                }
                None => json!({"name": name, "index_name": name, "state": "loading"}),
            });
        }
        Ok(list)
    })
    .await?;
    Ok(Json(json!({ "indexes": list })))
}

#[utoipa::path(get, path = "/index/{name}/info", tag = "v1", summary = "Describe an index", params(("name" = String, Path, description = "Index name")), responses((status = 200, description = "Its parameters and counts", body = Value)))]
async fn index_info(State(s): St, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let db = s.db.clone();
    Ok(Json(blocking(move || index_json(&db, &name)).await?))
}

#[utoipa::path(delete, path = "/index/{name}/delete", tag = "v1", summary = "Delete an index", params(("name" = String, Path, description = "Index name")), responses((status = 200, description = "Deleted", body = String, content_type = "text/plain")))]
async fn delete_index(State(s): St, Path(name): Path<String>) -> ApiResult<Response> {
    let db = s.db.clone();
    blocking(move || db.delete_index(&name)).await?;
    Ok(text(StatusCode::OK, "Index deleted successfully"))
}

/// `?format=json` on a search: answer JSON instead of Endee's msgpack (for browsers and
/// `curl`; Endee's clients send no such parameter, and content negotiation through `Accept`
/// would catch axios' default `Accept: application/json, …`, which the npm client sends).
#[derive(Deserialize)]
struct FormatQuery {
    format: Option<String>,
}

#[utoipa::path(post, path = "/index/{name}/search", tag = "v1", summary = "Search (dense, sparse or hybrid)", params(("name" = String, Path, description = "Index name"), ("format" = Option<String>, Query, description = "json: answer JSON instead of msgpack")), request_body(content = doc::SearchBody, content_type = "application/json"), responses((status = 200, description = "Hits as msgpack [[similarity, id, meta, filter, norm, vector], …], or with ?format=json a JSON list of {id, similarity, meta, filter, norm, vector}", content((doc::Binary = "application/msgpack"), (Vec<doc::Hit> = "application/json")))))]
async fn search(
    State(s): St,
    Path(name): Path<String>,
    Query(f): Query<FormatQuery>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let req = cairn_core::wire::decode_search(&body)?;
    let db = s.db.clone();
    let hits = blocking(move || db.handle(&name)?.search(&req)).await?;
    if f.format.as_deref() == Some("json") {
        let out: Vec<Value> = hits
            .iter()
            .map(|h| {
                json!({"id": h.id, "similarity": h.similarity, "meta": cairn_core::wire::meta_json(&h.meta),
                       "filter": cairn_core::wire::filter_json(&h.filter), "norm": h.norm, "vector": h.vector})
            })
            .collect();
        return Ok(Json(out).into_response());
    }
    Ok(msgpack(wire::encode_hits(&hits)))
}

/// `GET /index/{name}/vectors`: a page of stored vectors.
#[derive(Deserialize)]
struct PageQuery {
    offset: Option<usize>,
    limit: Option<usize>,
    #[serde(default)]
    include_vectors: bool,
}

/// Largest page of [`list_vectors`].
const MAX_PAGE: usize = 1000;

#[utoipa::path(get, path = "/index/{name}/vectors", tag = "v1", summary = "Browse stored vectors, a page at a time, in the order they were first written (CairnDB)", params(("name" = String, Path, description = "Index name"), ("offset" = Option<usize>, Query, description = "Vectors to skip (default 0)"), ("limit" = Option<usize>, Query, description = "Page size, 1 to 1,000 (default 50)"), ("include_vectors" = Option<bool>, Query, description = "Include each vector's values")), responses((status = 200, description = "{total, offset, vectors: [{id, meta, filter, norm, vector?}]}", body = doc::VectorPage)))]
async fn list_vectors(
    State(s): St,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(bad(format!("limit must be 1 to {MAX_PAGE}")));
    }
    let db = s.db.clone();
    let (total, recs) = blocking(move || db.handle(&name)?.page(offset, limit)).await?;
    let vectors: Vec<Value> = recs
        .iter()
        .map(|r| {
            let mut v = json!({"id": r.id, "meta": cairn_core::wire::meta_json(&r.meta),
                               "filter": cairn_core::wire::filter_json(&r.filter), "norm": r.norm});
            if q.include_vectors {
                v["vector"] = json!(r.vector);
            }
            v
        })
        .collect();
    Ok(Json(
        json!({"total": total, "offset": offset, "vectors": vectors}),
    ))
}

#[utoipa::path(post, path = "/index/{name}/vector/insert", tag = "v1", summary = "Insert or replace vectors (JSON or msgpack array)", params(("name" = String, Path, description = "Index name")), request_body(content((Vec<doc::InsertItem> = "application/json"), (doc::Binary = "application/msgpack"))), responses((status = 200, description = "Written and synced")))]
async fn insert(
    State(s): St,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ct = ct.split(';').next().unwrap_or("").trim();
    let items = match ct {
        "application/msgpack" | "application/x-msgpack" => {
            cairn_core::wire::decode_msgpack_insert(&body)?
        }
        "application/json" => cairn_core::wire::decode_json_insert(&body)?,
        _ => {
            return Err(bad(
                "Content-Type must be application/msgpack or application/json",
            ));
        }
    };
    drop(body);
    let db = s.db.clone();
    blocking(move || db.write(&name, |ix| ix.prepare_upsert(items))).await?;
    Ok(StatusCode::OK.into_response())
}

#[utoipa::path(post, path = "/index/{name}/vector/get", tag = "v1", summary = "Read one vector", params(("name" = String, Path, description = "Index name"), ("format" = Option<String>, Query, description = "json: answer JSON instead of msgpack")), request_body(content = doc::VectorGetBody, content_type = "application/json"), responses((status = 200, description = "The vector as msgpack, or with ?format=json as {id, meta, filter, norm, vector}", content((doc::Binary = "application/msgpack"), (Value = "application/json")))))]
async fn get_vector(
    State(s): St,
    Path(name): Path<String>,
    Query(f): Query<FormatQuery>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let id = cairn_core::wire::decode_id(&body)?;
    let db = s.db.clone();
    let (rec, hybrid) = blocking(move || {
        db.handle(&name)?
            .get(&id)?
            .ok_or_else(|| IndexError::NotFound(id).into())
    })
    .await?;
    if f.format.as_deref() == Some("json") {
        return Ok(Json(json!({"id": rec.id, "meta": cairn_core::wire::meta_json(&rec.meta),
            "filter": cairn_core::wire::filter_json(&rec.filter), "norm": rec.norm, "vector": rec.vector}))
        .into_response());
    }
    Ok(msgpack(wire::encode_vector(&rec, hybrid)))
}

#[utoipa::path(delete, path = "/index/{name}/vector/{id}/delete", tag = "v1", summary = "Delete one vector", params(("name" = String, Path, description = "Index name"), ("id" = String, Path, description = "Vector id")), responses((status = 200, description = "Deleted", body = String, content_type = "text/plain")))]
async fn delete_vector(
    State(s): St,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let db = s.db.clone();
    blocking(move || db.write(&name, |ix| ix.prepare_delete(vec![id]))).await?;
    Ok(text(StatusCode::OK, "Vector deleted successfully"))
}

#[utoipa::path(delete, path = "/index/{name}/vectors/delete", tag = "v1", summary = "Delete the vectors a filter selects", params(("name" = String, Path, description = "Index name")), request_body(content = doc::DeleteByFilterBody, content_type = "application/json"), responses((status = 200, description = "How many were deleted", body = String, content_type = "text/plain")))]
async fn delete_by_filter(
    State(s): St,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let filter = cairn_core::wire::decode_delete_by_filter(&body)?;
    let db = s.db.clone();
    let n = blocking(move || db.write(&name, |ix| ix.prepare_delete_by_filter(&filter))).await?;
    Ok(text(StatusCode::OK, format!("{n} vectors deleted")))
}

#[utoipa::path(post, path = "/index/{name}/filters/update", tag = "v1", summary = "Replace vectors' filter fields", params(("name" = String, Path, description = "Index name")), request_body(content = doc::UpdateFiltersBody, content_type = "application/json"), responses((status = 200, description = "How many were updated", body = String, content_type = "text/plain")))]
async fn update_filters(
    State(s): St,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let updates = cairn_core::wire::decode_filter_updates(&body)?;
    let db = s.db.clone();
    let n = blocking(move || db.write(&name, |ix| ix.prepare_update_filters(updates))).await?;
    Ok(text(StatusCode::OK, format!("{n} filters updated")))
}

/// A job as the API shows it: Endee's fields plus CairnDB's.
pub(crate) fn job_json(j: &Job) -> Value {
    let endee_status = match j.status {
        JobStatus::Queued | JobStatus::Running | JobStatus::Cancelling => "in_progress",
        JobStatus::Completed => "completed",
        JobStatus::Failed => "failed",
        JobStatus::Cancelled => "cancelled",
    };
    let mut v = json!({
        "job_id": j.job_id,
        "kind": match j.kind {
            JobKind::Backup => "backup",
            JobKind::Restore => "restore",
            JobKind::Rebuild => "rebuild",
        },
        "index_id": j.index_name,
        "index_name": j.index_name,
        "backup_name": j.backup_name,
        "status": endee_status,
        "state": j.status,
        "created_at": j.created_at / 1000,
        "started_at": j.started_at.unwrap_or(j.created_at) / 1000,
        "bytes_done": j.bytes_done,
        "bytes_total": j.bytes_total,
        "progress": if j.bytes_total > 0 { j.bytes_done as f64 / j.bytes_total as f64 } else if j.status == JobStatus::Completed { 1.0 } else { 0.0 },
        "write_pause_us": j.write_pause_us,
    });
    if j.kind != JobKind::Rebuild {
        v["target"] = json!(j.target.as_deref().unwrap_or("local"));
    }
    if let Some((done, total)) = j.vectors {
        v["vectors_done"] = json!(done);
        v["vectors_total"] = json!(total);
    }
    if let Some(c) = j.completed_at {
        v["completed_at"] = json!(c / 1000);
    }
    if let Some(e) = &j.error {
        v["error"] = json!(e);
    }
    if let Some(sz) = j.archive_size {
        v["archive_size"] = json!(sz);
    }
    if let Some(d) = &j.archive_sha256 {
        v["archive_sha256"] = json!(d);
    }
    if let Some(c) = &j.cut {
        v["vector_count"] = json!(c.vector_count);
    }
    if let Some(r) = &j.rebuild {
        v["previous_config"] = json!({"M": r.previous_m, "ef_con": r.previous_ef_con});
        v["new_config"] = json!({"M": r.m, "ef_con": r.ef_con});
    }
    v
}

/// A rebuild job as Endee's `rebuild/status` shows it: `status` is one of Endee's four
/// (`in_progress`, `completed`, `failed`, `idle`; a cancelled rebuild is `failed` with
/// error `cancelled`, and `state` says the exact status), progress in vectors.
fn rebuild_json(j: Option<&Job>) -> Value {
    let Some(j) = j else {
        return json!({"status": "idle"});
    };
    let mut v = job_json(j);
    if j.status == JobStatus::Cancelled {
        v["status"] = json!("failed");
    }
    let (done, total) = (j.bytes_done, j.bytes_total);
    v["vectors_processed"] = json!(done);
    v["total_vectors"] = json!(total);
    v["percent_complete"] = json!(if total > 0 {
        (done as f64 * 100.0 / total as f64).min(100.0)
    } else if j.status == JobStatus::Completed {
        100.0
    } else {
        0.0
    });
    v
}

#[utoipa::path(post, path = "/index/{name}/rebuild", tag = "v1", summary = "Start a graph rebuild job", params(("name" = String, Path, description = "Index name")), request_body(content = doc::RebuildBody, content_type = "application/json"), responses((status = 202, description = "The job, running", body = Value)))]
async fn rebuild(
    State(s): St,
    Path(index): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let (m, ef_con) = cairn_core::wire::decode_rebuild(&body)?;
    let db = s.db.clone();
    let job = blocking(move || {
        drive::submit_rebuild(
            &db,
            &index,
            &[FieldRebuild {
                field: 0,
                m,
                ef_con,
            }],
        )
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(rebuild_json(Some(&job)))).into_response())
}

#[utoipa::path(get, path = "/index/{name}/rebuild/status", tag = "v1", summary = "The newest rebuild of an index", params(("name" = String, Path, description = "Index name")), responses((status = 200, description = "Its status", body = Value)))]
async fn rebuild_status(State(s): St, Path(index): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(rebuild_json(s.db.rebuild_status(&index)?.as_ref())))
}

#[derive(Deserialize)]
struct NameBody {
    name: Option<String>,
    /// A backup target's name (absent or "local": the data directory).
    target: Option<String>,
    /// Make it incremental on this archive (on the same target).
    incremental_from: Option<String>,
}

/// A request's backup target: `None` for the data directory (absent or `"local"`).
pub(crate) fn target_of(t: Option<String>) -> Option<String> {
    t.filter(|t| !t.is_empty() && t != "local")
}

/// `?target=NAME` on archive routes.
#[derive(Deserialize)]
pub(crate) struct TargetQuery {
    pub(crate) target: Option<String>,
    /// On delete: the incremental backups that continue the archive go with it.
    #[serde(default)]
    pub(crate) chain: bool,
}

#[utoipa::path(post, path = "/index/{name}/backup", tag = "v1", summary = "Start a backup job", params(("name" = String, Path, description = "Index name")), request_body(content = doc::BackupBody, content_type = "application/json"), responses((status = 202, description = "The job, running", body = Value)))]
async fn create_backup(
    State(s): St,
    Path(index): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let b: NameBody = serde_json::from_slice(&body).map_err(|_| bad("Invalid JSON"))?;
    let name = b.name.ok_or_else(|| bad("Missing backup name"))?;
    // A user's name: no `.` (that separates a database's names from the default namespace).
    let name = Scope::root().name(&name)?;
    let target = target_of(b.target);
    let base = match b.incremental_from {
        Some(n) => Some(Scope::root().name(&n)?),
        None => None,
    };
    let db = s.db.clone();
    let job = blocking(move || {
        drive::submit_backup(&db, &index, &name, target.as_deref(), base.as_deref())
    })
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"job_id": job.job_id, "status": "in_progress", "target": job.target.as_deref().unwrap_or("local")})),
    )
        .into_response())
}

/// Archive names (Endee's shape), of the data directory or of `?target=`.
#[utoipa::path(get, path = "/backups", tag = "v1", summary = "List archives", params(("target" = Option<String>, Query, description = "A --backup-target (default: the data directory)")), responses((status = 200, description = "Archive names", body = Value)))]
async fn list_backups(State(s): St, Query(q): Query<TargetQuery>) -> ApiResult<Json<Value>> {
    let Some(t) = target_of(q.target) else {
        return Ok(Json(json!(s.db.backup_names())));
    };
    let db = s.db.clone();
    let names: Vec<String> = blocking(move || db.target_backups(&t))
        .await?
        .into_iter()
        .map(|r| r.name)
        .collect();
    Ok(Json(json!(names)))
}

/// The `--backup-schedule`s: each one's spec, last and next run, last job and last error.
#[utoipa::path(get, path = "/backups/schedules", tag = "v1", summary = "List backup schedules", responses((status = 200, description = "The schedules and their last runs", body = Value)))]
async fn list_schedules(State(s): St) -> Json<Value> {
    Json(json!({ "schedules": *lock(&s.db.schedules) }))
}

/// Every backup target with where it is and what it holds: `local` (the data directory)
/// and each `--backup-target`, its archives with size, digest, index and cut. A target that
/// cannot be listed says why instead.
#[utoipa::path(get, path = "/backups/targets", tag = "v1", summary = "List backup targets", responses((status = 200, description = "The targets", body = Value)))]
async fn list_targets(State(s): St) -> ApiResult<Json<Value>> {
    let db = s.db.clone();
    let v = blocking(move || {
        let mut out = vec![json!({
            "name": "local",
            "location": db.path("backups").display().to_string(),
            "backups": db.backup_names(),
        })];
        for (name, cfg) in &db.targets {
            let mut t = json!({"name": name, "location": cfg.location});
            match db.target_backups(name) {
                Ok(rs) => t["backups"] = json!(rs),
                Err(e) => t["error"] = json!(e.to_string()),
            }
            out.push(t);
        }
        Ok::<_, DbError>(json!({ "targets": out }))
    })
    .await?;
    Ok(Json(v))
}

#[utoipa::path(get, path = "/backups/jobs", tag = "v1", summary = "List jobs (backup, restore, rebuild)", responses((status = 200, description = "The jobs", body = Value)))]
async fn list_jobs(State(s): St) -> Json<Value> {
    let jobs: Vec<Value> = s.db.jobs().iter().map(job_json).collect();
    Json(json!({ "jobs": jobs }))
}

#[utoipa::path(get, path = "/backups/jobs/{id}", tag = "v1", summary = "One job", params(("id" = String, Path, description = "Job id")), responses((status = 200, description = "The job", body = Value)))]
async fn get_job(State(s): St, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(job_json(&s.db.job(&id)?)))
}

#[utoipa::path(delete, path = "/backups/jobs/{id}", tag = "v1", summary = "Cancel a job", params(("id" = String, Path, description = "Job id")), responses((status = 200, description = "The job, cancelling", body = Value)))]
async fn cancel_job(State(s): St, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let db = s.db.clone();
    let j = blocking(move || drive::cancel(&db, &id)).await?;
    Ok(Json(job_json(&j)))
}

#[utoipa::path(delete, path = "/backups/{name}", tag = "v1", summary = "Delete an archive", params(("name" = String, Path, description = "Archive name"), ("target" = Option<String>, Query, description = "A --backup-target (default: the data directory)"), ("chain" = Option<bool>, Query, description = "Also delete the incremental backups that continue it")), responses((status = 204, description = "Deleted")))]
async fn delete_backup(
    State(s): St,
    scope: Scope,
    Path(name): Path<String>,
    Query(q): Query<TargetQuery>,
) -> ApiResult<Response> {
    scope.write()?;
    let name = scope.name(&name)?;
    let db = s.db.clone();
    let chain = q.chain;
    match target_of(q.target) {
        None => blocking(move || db.delete_backup(&name, chain)).await?,
        Some(t) => blocking(move || db.delete_target_backup(&t, &name, chain)).await?,
    };
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, path = "/backups/{name}/info", tag = "v1", summary = "Describe and verify an archive", params(("name" = String, Path, description = "Archive name"), ("target" = Option<String>, Query, description = "A --backup-target (default: the data directory)")), responses((status = 200, description = "Its manifest, sizes and digest check", body = Value)))]
pub(crate) async fn backup_info(
    State(s): St,
    scope: Scope,
    Path(name): Path<String>,
    Query(q): Query<TargetQuery>,
) -> ApiResult<Json<Value>> {
    let name = scope.name(&name)?;
    let db = s.db.clone();
    if let Some(t) = target_of(q.target) {
        let v = blocking(move || target_info(&db, &t, &name)).await?;
        return Ok(Json(v));
    }
    let v = blocking(move || {
        let p = db.backup_file(&name)?;
        let size = std::fs::metadata(&p)?.len();
        // Verified by streaming every entry through its digest: nothing is written.
        let m = drive::verify_digests(&p)?;
        let mut v = serde_json::to_value(&m).map_err(|e| DbError::Internal(e.to_string()))?;
        v["archive_size"] = json!(size);
        v["verified"] = json!(true);
        Ok(v)
    })
    .await?;
    Ok(Json(v))
}

/// An archive on a target: its record (size, digest, index, cut), where it lives, and the
/// manifest read from the archive's head. The digests are checked in full by a restore.
fn target_info(db: &Db, t: &str, name: &str) -> Result<Value, DbError> {
    let rec = db
        .target_backups(t)?
        .into_iter()
        .find(|r| r.name == name)
        .ok_or_else(|| EngineError::BackupNotFound(name.into()))?;
    let mut target = db.target(t)?;
    let head = target
        .read_at(&cairn_core::target::archive_key(name), 0, 256 << 10)
        .map_err(|e| DbError::Target(e.to_string()))?;
    let mut dec = cairn_core::archive::ArchiveDecoder::new();
    // The head holds the manifest; the rest of the archive is not read here.
    let _ = dec.feed(&head, &mut cairn_core::archive::NullSink);
    let mut v = match dec.manifest() {
        Some(m) => serde_json::to_value(m).map_err(|e| DbError::Internal(e.to_string()))?,
        None => json!({}),
    };
    v["archive_size"] = json!(rec.size);
    v["archive_sha256"] = json!(rec.sha256);
    v["target"] = json!(t);
    v["location"] = json!(format!(
        "{}/{}",
        target.location(),
        cairn_core::target::archive_key(name)
    ));
    v["verified"] = json!(false);
    Ok(v)
}

#[utoipa::path(get, path = "/backups/{name}/download", tag = "v1", summary = "Download an archive", params(("name" = String, Path, description = "Archive name"), ("target" = Option<String>, Query, description = "A --backup-target (default: the data directory)")), responses((status = 200, description = "The tar archive", body = doc::Binary, content_type = "application/x-tar")))]
pub(crate) async fn download(
    State(s): St,
    scope: Scope,
    Path(user): Path<String>,
    Query(q): Query<TargetQuery>,
) -> ApiResult<Response> {
    let name = scope.name(&user)?;
    let db = s.db.clone();
    if let Some(t) = target_of(q.target) {
        // Streamed from the object store through a small channel: bounded memory.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let len = blocking(move || {
            if !db.target_lists(&t, &name)? {
                return Err(EngineError::BackupNotFound(name.clone()).into());
            }
            let cfg = db
                .targets
                .get(&t)
                .cloned()
                .ok_or_else(|| EngineError::UnknownTarget(t.clone()))?;
            cfg.stream_to(&cairn_core::target::archive_key(&name), tx)
                .map_err(|e| DbError::Target(e.to_string()))
        })
        .await?;
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        return Ok(tar_response(Body::from_stream(stream), len, &user));
    }
    let p = blocking(move || db.backup_file(&name).map(|p| (p, user))).await?;
    let (path, name) = p;
    let f = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::from(DbError::Io(e)))?;
    let len = f
        .metadata()
        .await
        .map_err(|e| ApiError::from(DbError::Io(e)))?
        .len();
    let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 << 10);
    Ok(tar_response(Body::from_stream(stream), len, &name))
}

/// An archive download's response: `len` bytes of tar as an attachment named `name.tar`.
fn tar_response(body: Body, len: u64, name: &str) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.tar\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

#[derive(Deserialize)]
struct RestoreBody {
    target_index_name: Option<String>,
    /// The backup target the archive is on (absent or "local": the data directory).
    target: Option<String>,
    #[serde(rename = "async", default)]
    run_async: bool,
}

#[utoipa::path(post, path = "/backups/{name}/restore", tag = "v1", summary = "Restore an archive into a new index", params(("name" = String, Path, description = "Archive name")), request_body(content = doc::RestoreBody, content_type = "application/json"), responses((status = 201, description = "Restored", body = String, content_type = "text/plain"), (status = 202, description = "The job, running (async)", body = Value)))]
async fn restore(
    State(s): St,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let name = Scope::root().name(&name)?;
    let b: RestoreBody = serde_json::from_slice(&body).map_err(|_| bad("Invalid JSON"))?;
    let target = b
        .target_index_name
        .ok_or_else(|| bad("Missing target_index_name"))?;
    let target = Scope::root().name(&target)?;
    let db = s.db.clone();
    let wait = !b.run_async;
    let from = target_of(b.target);
    let job =
        blocking(move || drive::submit_restore(&db, &name, from.as_deref(), &target, wait)).await?;
    if wait {
        Ok(text(StatusCode::CREATED, "Backup restored successfully"))
    } else {
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({"job_id": job.job_id, "status": "in_progress"})),
        )
            .into_response())
    }
}

#[derive(Deserialize)]
pub(crate) struct UploadQuery {
    pub(crate) name: Option<String>,
}

/// Streams a body into the upload temp file, then validates and publishes it.
#[utoipa::path(post, path = "/backups/upload", tag = "v1", summary = "Upload an archive (multipart field backup, or a raw tar with ?name=)", params(("name" = Option<String>, Query, description = "Archive name (raw tar bodies)")), request_body(content((doc::Binary = "application/x-tar"), (doc::Binary = "multipart/form-data"))), responses((status = 201, description = "Uploaded and verified", body = String, content_type = "text/plain")))]
pub(crate) async fn upload(
    State(s): St,
    scope: Scope,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    req: Request,
) -> ApiResult<Response> {
    scope.write()?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let limits = s.limits;
    let db = s.db.clone();
    // A declared length is checked before a byte is stored; the count is checked again as
    // bytes arrive (a body may lie or come chunked).
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        check_upload_room(&db, len, limits)?;
    }
    if ct.starts_with("multipart/form-data") {
        let mut mp = Multipart::from_request_parts_and_body(req)
            .await
            .map_err(|e| bad(e.to_string()))?;
        while let Some(field) = mp.next_field().await.map_err(|e| bad(e.to_string()))? {
            if field.name() != Some("backup") {
                continue;
            }
            let fname = field
                .file_name()
                .ok_or_else(|| bad("Missing backup name or filename"))?
                .to_string();
            let name = fname
                .strip_suffix(".tar")
                .ok_or_else(|| bad("Invalid backup file extension. Expected .tar file"))?
                .to_string();
            let name = scope.name(&q.name.clone().unwrap_or(name))?;
            let up = begin_upload(&db, &name)?;
            let res = receive(db, up, field, limits).await;
            return finish_upload(res).await;
        }
        return Err(bad(
            "Missing backup file content (multipart field 'backup')",
        ));
    }
    if ct.starts_with("application/x-tar") || ct.starts_with("application/octet-stream") {
        let name = q
            .name
            .ok_or_else(|| bad("Missing backup name (query parameter 'name')"))?;
        let name = scope.name(&name)?;
        let up = begin_upload(&db, &name)?;
        let res = receive(db, up, req.into_body().into_data_stream(), limits).await;
        return finish_upload(res).await;
    }
    Err(bad(
        "Content-Type must be multipart/form-data (field 'backup') or application/x-tar",
    ))
}

/// Refuses an upload of `len` bytes that is over the limit (413) or would leave less than the
/// reserve free on the data directory's file system (507).
fn check_upload_room(db: &Db, len: u64, limits: Limits) -> Result<(), DbError> {
    if len > limits.max_upload {
        return Err(DbError::TooLarge(format!(
            "backup upload of {len} bytes is over the limit of {} bytes (--max-upload-mib)",
            limits.max_upload
        )));
    }
    check_free(db, len, limits.upload_reserve)
}

/// 507 unless `need` bytes fit on the data directory's file system with `reserve` left over.
fn check_free(db: &Db, need: u64, reserve: u64) -> Result<(), DbError> {
    let avail = fs2::available_space(db.path("backups"))?;
    if avail < need.saturating_add(reserve) {
        return Err(DbError::NoSpace(format!(
            "not enough disk space for the upload: {need} more bytes needed, {avail} free, {reserve} kept in reserve (--upload-reserve-mib)"
        )));
    }
    Ok(())
}

/// Bytes between free-space checks while an upload streams.
const SPACE_CHECK_EVERY: u64 = 16 << 20;

/// Feeds a body stream to the upload step machine a chunk at a time (each chunk checked as
/// an archive and written on a blocking thread), refusing it once it passes the upload
/// limit or the free space left would drop under the reserve; then validates and publishes.
async fn receive<S, E>(
    db: Arc<Db>,
    mut up: UploadTask,
    body: S,
    limits: Limits,
) -> Result<(), DbError>
where
    S: futures_util::Stream<Item = Result<axum::body::Bytes, E>>,
    E: std::fmt::Display,
{
    let mut body = std::pin::pin!(body);
    let (mut n, mut checked) = (0u64, 0u64);
    let mut abort = None;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                abort = Some(DbError::BadRequest(format!("upload aborted: {e}")));
                break;
            }
        };
        n += chunk.len() as u64;
        if n > limits.max_upload {
            abort = Some(DbError::TooLarge(format!(
                "backup upload is over the limit of {} bytes (--max-upload-mib)",
                limits.max_upload
            )));
            break;
        }
        if n - checked >= SPACE_CHECK_EVERY {
            // Room for the next window beyond the reserve, or stop before the disk fills.
            if let Err(e) = check_free(&db, SPACE_CHECK_EVERY, limits.upload_reserve) {
                abort = Some(e);
                break;
            }
            checked = n;
        }
        let db2 = db.clone();
        let (back, r) = tokio::task::spawn_blocking(move || {
            let r = drive::feed_upload(&db2, &mut up, chunk.to_vec());
            (up, r)
        })
        .await
        .map_err(|e| DbError::Internal(e.to_string()))?;
        up = back;
        if let Err(e) = r {
            abort = Some(e);
            break;
        }
    }
    tokio::task::spawn_blocking(move || drive::end_upload(&db, up, abort))
        .await
        .map_err(|e| DbError::Internal(e.to_string()))?
}

fn begin_upload(db: &Db, name: &str) -> ApiResult<UploadTask> {
    drive::begin_upload(db, name).map_err(ApiError::from)
}

async fn finish_upload(res: Result<(), DbError>) -> ApiResult<Response> {
    res?;
    Ok(text(StatusCode::CREATED, "Backup uploaded successfully"))
}

trait MultipartFromRequest: Sized {
    async fn from_request_parts_and_body(
        req: Request,
    ) -> Result<Self, axum::extract::multipart::MultipartRejection>;
}

impl MultipartFromRequest for Multipart {
    async fn from_request_parts_and_body(
        req: Request,
    ) -> Result<Self, axum::extract::multipart::MultipartRejection> {
        use axum::extract::FromRequest;
        Multipart::from_request(req, &()).await
    }
}
