//! Read-only HTTP publication of a transparency log directory in the c2sp.org/tlog-tiles
//! layout: `GET /checkpoint`, `GET /tile/<L>/<N>[.p/<W>]`, `GET /tile/entries/<N>[.p/<W>]`.
//!
//! Only paths that parse as tlog-tiles resources are served (so nothing else in the
//! directory, and no `..`, can be reached). The files are public and verified by whoever
//! reads them; serving them needs no trust. Full tiles never change and are cacheable
//! forever; the checkpoint and partial tiles are not cached.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Routes serving the log stored in `dir` (mount with [`Router::nest`] or serve alone).
pub fn router(dir: PathBuf) -> Router {
    Router::new()
        .route("/checkpoint", get(checkpoint))
        .route("/tile/{*path}", get(tile))
        .with_state(Arc::new(dir))
}

async fn checkpoint(State(dir): State<Arc<PathBuf>>) -> Response {
    serve(dir.join("checkpoint"), "text/plain; charset=utf-8", false).await
}

async fn tile(State(dir): State<Arc<PathBuf>>, Path(path): Path<String>) -> Response {
    let full = format!("tile/{path}");
    let Ok(t) = sotto_log::Tile::parse_path(&full) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // The path is rebuilt from the parsed tile: only canonical names reach the disk.
    let canonical = t.path();
    serve(
        dir.join(&canonical),
        "application/octet-stream",
        t.is_full(),
    )
    .await
}

async fn serve(path: PathBuf, content_type: &'static str, immutable: bool) -> Response {
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let mut r = bytes.into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static(if immutable {
                    "public, max-age=31536000, immutable"
                } else {
                    "no-cache"
                }),
            );
            r
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
