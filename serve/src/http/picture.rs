//! `POST /classify/{model}?preprocess=mnist|resize|exact[&invert=auto|always|never]`:
//! a PNG or JPEG (the raw body, or the first file of a multipart form)
//! through the same decoding and preprocessing as `infer classify`, so a
//! file gives exactly the numbers `infer classify` prints for it. Outside
//! the protocol's paths: it is for applications, not for protocol clients.
//!
//! Decoding runs on blocking threads, `--decode-threads` at once, so that
//! liveness and the other models stay answered while big pictures decode
//! (eight 8192×8192 PNGs on the I/O thread held liveness 4.9 s); a
//! request waits for a decoder at most `--read-timeout`, then gets 503.
//! A picture may have at most [`pixel_cap`] pixels for its model.

use std::collections::BTreeMap;
use std::path::Path as FsPath;
use std::str::FromStr;
use std::time::Instant;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use serde_json::{json, Value};

use super::state::{read_body, AppState, BodyLimit, Path};
use crate::api_error::{ApiError, Kind};
use ae_core::picture::{decode_picture_within, MAX_PICTURE_PIXELS};
use ae_core::preprocess::{Fit, Invert, Preprocess};

pub async fn classify(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let model = state.models.get(&name, "")?;
    let Query(query) = query.map_err(|e| ApiError::bad(format!("bad query string: {e}")))?;
    let pre = preprocess(&query)?;
    let Some(classifier) = &model.classifier else {
        return Err(ApiError::bad(format!("model {name:?} is not a classifier (it has no [batch, classes] output)")));
    };
    let scores = model.outputs.iter().position(|o| o.name == classifier.output).expect("the contract names an output");
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (bytes, _reserved) = read_body(&state, &headers, body, BodyLimit::flag(&state.limits)).await?;
    let start = Instant::now();
    let picture =
        if content_type.starts_with("multipart/form-data") { first_file(&content_type, bytes).await? } else { bytes };
    let pixels = decode(&state, model.form.image, picture, pre).await?;
    let mut images = Vec::new();
    ae_core::idx::normalize_into(&pixels, &mut images); // [1, C, H, W] in [0, 1]
    if !model.form.takes_pixels() {
        images = model.form.values(&images); // [1, …] in the model's layout and values
    }
    let rows = model.infer(images, 1, None).await?;
    let mut p = rows[scores].data.clone();
    if classifier.scores == infer::contract::Scores::Logits {
        infer::contract::softmax(&mut p);
    }
    // The class and its name exactly as infer classify picks them.
    let (class, confidence) = infer::report::argmax(&p);
    let class_name = model.class_names.get(class).cloned().unwrap_or_else(|| class.to_string());
    model.latency.observe(start.elapsed().as_secs_f64());
    Ok(Json(json!({
        "model_name": model.name,
        "model_version": model.version.to_string(),
        "preprocess": pre.fit.to_string(),
        "invert": pre.invert.to_string(),
        "class": class,
        "name": class_name,
        "confidence": confidence,
        "probabilities": p,
    })))
}

/// The most pixels a picture for a model of `[C, H, W]` inputs may have:
/// 16 384 times its input (12.25 Mi for 28×28, so a 12-megapixel photo
/// of a digit still goes), at least 1 Mi, at most the tool's
/// [`MAX_PICTURE_PIXELS`]. Decoding allocates width × height × 4 bytes.
pub fn pixel_cap([_, h, w]: [usize; 3]) -> u64 {
    ((h * w) as u64 * 16_384).clamp(1 << 20, MAX_PICTURE_PIXELS)
}

/// The picture as the model's `[C, H, W]` pixels, decoded on a blocking
/// thread once a decoder is free.
async fn decode(
    state: &AppState,
    shape: [usize; 3],
    picture: bytes::Bytes,
    pre: Preprocess,
) -> Result<Vec<u8>, ApiError> {
    let wait = state.limits.read_timeout;
    let permit = tokio::time::timeout(wait, state.decoders.clone().acquire_owned())
        .await
        .map_err(|_| {
            ApiError::new(
                Kind::Unavailable,
                format!("every picture decoder stayed busy for --read-timeout ({} s); retry later", wait.as_secs_f64()),
            )
        })?
        .map_err(|_| ApiError::new(Kind::Unavailable, "the server is stopping"))?;
    let cap = pixel_cap(shape);
    // Runs to its end even if the client leaves, holding its decoder.
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        decode_picture_within(FsPath::new("the request body"), &picture, shape, &pre, cap)
    })
    .await
    .map_err(|e| ApiError::new(Kind::Internal, format!("picture decoding failed: {e}")))?
    .map_err(|e| ApiError::bad(e.to_string()))
}

fn preprocess(query: &BTreeMap<String, String>) -> Result<Preprocess, ApiError> {
    if let Some(k) = query.keys().find(|k| !matches!(k.as_str(), "preprocess" | "invert")) {
        return Err(ApiError::bad(format!("unknown query parameter {k:?}: expected preprocess and invert")));
    }
    let fit = match query.get("preprocess") {
        None => Fit::default(),
        Some(v) => {
            Fit::from_str(v).map_err(|_| ApiError::bad(format!("preprocess={v:?}: expected exact, resize or mnist")))?
        }
    };
    let mut pre = Preprocess::new(fit);
    if let Some(v) = query.get("invert") {
        pre.invert =
            Invert::from_str(v).map_err(|_| ApiError::bad(format!("invert={v:?}: expected auto, always or never")))?;
    }
    Ok(pre)
}

/// The first file field of a multipart form.
async fn first_file(content_type: &str, body: bytes::Bytes) -> Result<bytes::Bytes, ApiError> {
    let bad = |e: multer::Error| ApiError::bad(format!("multipart body: {e}"));
    let boundary = multer::parse_boundary(content_type).map_err(bad)?;
    let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    while let Some(field) = form.next_field().await.map_err(bad)? {
        if field.file_name().is_some() {
            return field.bytes().await.map_err(bad);
        }
    }
    Err(ApiError::bad("multipart body holds no file field"))
}
