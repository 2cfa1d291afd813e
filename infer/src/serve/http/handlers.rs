//! The protocol's REST endpoints.

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::state::{is_draining, read_body, AppState, Path};
use super::types::{self, HEADER_LENGTH};
use crate::serve::api_error::{ApiError, Kind};
use crate::serve::identity::{server_metadata_json, PLATFORM};
use crate::serve::model::ServedModel;
use crate::serve::model_config;

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
    let tensor = |t: &crate::session::TensorSpec| json!({ "name": t.name, "datatype": "FP32", "shape": t.sizes() });
    json!({
        "name": model.name,
        "versions": state.models.versions(&model.name),
        "platform": PLATFORM,
        "inputs": [tensor(&model.input)],
        "outputs": model.outputs.iter().map(tensor).collect::<Vec<_>>(),
    })
}

pub async fn model_metadata(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let model = state.models.get(&name, "")?;
    Ok(Json(metadata(&state, model)))
}

pub async fn model_metadata_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let model = state.models.get(&name, &version)?;
    Ok(Json(metadata(&state, model)))
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
    Ok(ready_json(&state, state.models.get(&name, "")?))
}

pub async fn model_ready_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(ready_json(&state, state.models.get(&name, &version)?))
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
    let model = state.models.get(name, version)?.clone();
    let header_length = match headers.get(HEADER_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| ApiError::bad(format!("Inference-Header-Content-Length is {v:?}, not a byte count")))?,
        ),
    };
    let (bytes, _reserved) = read_body(&state, &headers, body).await?;
    let start = Instant::now();
    let mut request = types::parse_request(&bytes, header_length, &model)?;
    drop(bytes);
    let (images, n) = model.validate(std::mem::take(&mut request.inputs))?;
    let rows = model.infer(images, n).await?;
    let (body, json_length) = types::response_body(&model, &request, &rows);
    state.metrics.latency.with_label_values(&[model.name.as_str()]).observe(start.elapsed().as_secs_f64());
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
