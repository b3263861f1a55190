//! The console's static files, embedded in the binary: the vendored htmx (pinned, with
//! its licence beside it in `api/assets/`) and the stylesheet. Each is served under a
//! name that carries a hash of its bytes, so a browser may cache it for a year and a new
//! build's file is a new URL.

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// One embedded file and the hashed name it is served under.
pub struct Asset {
    pub name: String,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

impl Asset {
    fn new(stem: &str, extension: &str, content_type: &'static str, bytes: &'static [u8]) -> Self {
        let hash = hex::encode(&Sha256::digest(bytes)[..6]);
        Self {
            name: format!("{stem}.{hash}.{extension}"),
            content_type,
            bytes,
        }
    }

    /// Where a page links it.
    pub fn url(&self) -> String {
        format!("/console/assets/{}", self.name)
    }
}

/// The console's files.
pub struct Assets {
    pub htmx: Asset,
    pub stylesheet: Asset,
}

pub static ASSETS: LazyLock<Assets> = LazyLock::new(|| Assets {
    htmx: Asset::new(
        "htmx-2.0.11",
        "min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/htmx-2.0.11.min.js"),
    ),
    stylesheet: Asset::new(
        "console",
        "css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/console.css"),
    ),
});

/// `GET /console/assets/{name}`: the file with that hashed name, cached for a year.
pub(super) async fn asset(Path(name): Path<String>) -> Response {
    let assets = &*ASSETS;
    match [&assets.htmx, &assets.stylesheet]
        .into_iter()
        .find(|asset| asset.name == name)
    {
        Some(asset) => (
            [
                (CONTENT_TYPE, asset.content_type),
                (CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            asset.bytes,
        )
            .into_response(),
        None => super::error::ConsoleError::NotFound("file").into_response(),
    }
}
