//! The protocol's REST endpoints.

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::state::{is_draining, read_body, AppState, BodyLimit, Path};
use super::types::{self, HEADER_LENGTH};
use crate::api_error::{ApiError, Kind};
use crate::control::Registry;
use crate::identity::{server_metadata_json, PLATFORM};
use crate::model::{check_parameters, ServedModel};
use crate::model_config;

pub async fn live() -> Json<Value> {
    Json(json!({ "live": true }))
}

pub async fn ready(State(state): State<AppState>) -> Response {
    if is_draining(&state) {
        return ApiError::new(Kind::Unavailable, "the server is shutting down").into_response();
    }
    Json(json!({ "ready": true })).into_response()
}

pub async fn server_metadata() -> Json<Value> {
    Json(server_metadata_json())
}

fn metadata(state: &AppState, model: &ServedModel) -> Value {
    // Outputs answer as FP32 whatever the model's (float16 ones widened).
    let tensor = |t: &infer::session::TensorSpec, datatype: &str| json!({ "name": t.name, "datatype": datatype, "shape": t.sizes() });
    json!({
        "name": model.name,
        "versions": state.models.versions(&model.name),
        "platform": PLATFORM,
        "inputs": [tensor(&model.input, model.input.element.datatype())],
        "outputs": model.outputs.iter().map(|o| tensor(o, "FP32")).collect::<Vec<_>>(),
    })
}

pub async fn model_metadata(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let model = state.models.get(&name, "")?;
    Ok(Json(metadata(&state, &model)))
}

pub async fn model_metadata_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let model = state.models.get(&name, &version)?;
    Ok(Json(metadata(&state, &model)))
}

fn ready_json(state: &AppState, model: &ServedModel) -> Response {
    if is_draining(state) {
        return ApiError::new(Kind::Unavailable, "the server is shutting down").into_response();
    }
    if !model.queue.serving() {
        let why = format!("model {:?} is not serving: its session threads have stopped", model.name);
        return ApiError::new(Kind::Unavailable, why).into_response();
    }
    Json(json!({ "name": model.name, "version": model.version.to_string(), "ready": true })).into_response()
}

pub async fn model_ready(State(state): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let model = state.models.get(&name, "")?;
    Ok(ready_json(&state, &model))
}

pub async fn model_ready_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let model = state.models.get(&name, &version)?;
    Ok(ready_json(&state, &model))
}

pub async fn model_config(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(model_config::to_json(&state.models.get(&name, "")?.config)))
}

pub async fn model_config_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(model_config::to_json(&state.models.get(&name, &version)?.config)))
}

pub async fn infer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    run_infer(state, &name, "", headers, body).await
}

pub async fn infer_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    run_infer(state, &name, &version, headers, body).await
}

async fn run_infer(
    state: AppState,
    name: &str,
    version: &str,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Draining answers what reaches here: the connection was accepted.
    let model = state.models.get(name, version)?;
    let header_length = match headers.get(HEADER_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| ApiError::bad(format!("Inference-Header-Content-Length is {v:?}, not a byte count")))?,
        ),
    };
    let (bytes, _reserved) = read_body(&state, &headers, body, types::body_limit(&model, &state.limits)).await?;
    let start = Instant::now();
    let mut request = types::parse_request(&bytes, header_length, &model)?;
    drop(bytes);
    let (images, n) = model.validate(std::mem::take(&mut request.inputs))?;
    let rows = model.infer(images, n, request.timeout).await?;
    let (body, json_length) = types::response_body(&model, &request, &rows);
    model.latency.observe(start.elapsed().as_secs_f64());
    let mut response = Response::new(Body::from(body));
    let h = response.headers_mut();
    match json_length {
        Some(len) => {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            h.insert(HEADER_LENGTH, HeaderValue::from(len));
        }
        None => {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
    }
    Ok(response)
}

/// A repository call's body: JSON, or nothing (every field is optional).
async fn repository_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let (bytes, _reserved) = read_body(state, headers, body, BodyLimit::flag(&state.limits)).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let v: Value =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad(format!("invalid JSON in the request: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad(format!("the request body is {v}, not a JSON object")));
    }
    Ok(v)
}

/// A repository call's `parameters`, each checked against `known`.
fn repository_parameters<'a>(
    v: &'a Value,
    known: &[&str],
    place: &str,
) -> Result<Option<&'a serde_json::Map<String, Value>>, ApiError> {
    match v.get("parameters") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(p)) => {
            check_parameters(p.keys(), known, || place.to_string())?;
            Ok(Some(p))
        }
        Some(p) => Err(ApiError::bad(format!("parameters is {p}, not a JSON object"))),
    }
}

/// `POST /v2/repository/index`: every model of the repository, its
/// versions and their state (`{"ready": true}`: the ready ones).
pub async fn repository_index(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let v = repository_body(&state, &headers, body).await?;
    Registry::check_repository(v.get("repository_name").and_then(Value::as_str).unwrap_or(""))?;
    let ready = match v.get("ready") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(r) => return Err(ApiError::bad(format!("ready is {r}, not true or false"))),
    };
    Ok(Json(json!(state.models.index(ready)?)))
}

/// `POST /v2/repository/models/{m}/load`: loads or reloads the model
/// (`parameters.config`: a JSON configuration in place of its
/// config.pbtxt); answers once it serves.
pub async fn repository_load(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let v = repository_body(&state, &headers, body).await?;
    let config = match repository_parameters(&v, &["config"], "the load request")?.and_then(|p| p.get("config")) {
        None => None,
        Some(Value::String(c)) => Some(c.clone()),
        Some(c) => Some(serde_json::to_string(c).expect("a JSON value serializes")),
    };
    state.models.load(&name, config.as_deref()).await?;
    // Triton answers both with 200 and no body.
    Ok(StatusCode::OK)
}

/// `POST /v2/repository/models/{m}/unload`: stops serving the model once
/// its queued requests are answered.
pub async fn repository_unload(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let v = repository_body(&state, &headers, body).await?;
    // No model depends on another here, so unload_dependents has nothing more to unload.
    repository_parameters(&v, &["unload_dependents"], "the unload request")?;
    state.models.unload(&name).await?;
    Ok(StatusCode::OK)
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut response = state.metrics.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

pub async fn no_route(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no endpoint at {}", uri.path()))
}

pub async fn wrong_method(method: Method, uri: Uri) -> Response {
    let e = ApiError::bad(format!("{method} is not allowed on {}", uri.path()));
    let mut r = e.into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}
