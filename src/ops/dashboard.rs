//! The web dashboard at `/`: one page and its assets, embedded in the binary at build time
//! (no build step, no CDN: the machines it runs on may be offline). The page holds no data;
//! it loads without the token and then calls the REST API with it (asked for once, kept in
//! the tab's session storage, never put in a URL).

use std::{path::PathBuf, sync::LazyLock};

use axum::{
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

/// An embedded file: its name under `/assets/` (`index.html` is served at `/`).
struct Asset {
    name: &'static str,
    mime: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        mime: "text/html; charset=utf-8",
        body: include_str!("dashboard/index.html"),
    },
    Asset {
        name: "app.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("dashboard/app.js"),
    },
    Asset {
        name: "api.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("dashboard/api.js"),
    },
    Asset {
        name: "util.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("dashboard/util.js"),
    },
    Asset {
        name: "plugins.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("dashboard/plugins.js"),
    },
    Asset {
        name: "tools.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("dashboard/tools.js"),
    },
    Asset {
        name: "form.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("dashboard/form.js"),
    },
    Asset {
        name: "result.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("dashboard/result.js"),
    },
    Asset {
        name: "log.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("dashboard/log.js"),
    },
    Asset {
        name: "charts.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("dashboard/charts.js"),
    },
    Asset {
        name: "providers.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("dashboard/providers.js"),
    },
    Asset {
        name: "consensus.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("dashboard/consensus.js"),
    },
    Asset {
        name: "app.css",
        mime: "text/css; charset=utf-8",
        body: include_str!("dashboard/app.css"),
    },
];

/// Only the page's own files run in it: no inline script, nothing from elsewhere, never in a
/// frame (clickjacking), and it talks to this server only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Each asset's ETag: a hash of its bytes, so a reload costs a 304.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            a.body.hash(&mut h);
            format!("\"{:016x}\"", h.finish())
        })
        .collect()
});

/// For working on the dashboard: a folder whose files are served instead of the embedded
/// ones, read at each request (`PLUGBOARD_DASHBOARD_DIR=src/ops/dashboard`).
static DEV_DIR: LazyLock<Option<PathBuf>> =
    LazyLock::new(|| std::env::var_os("PLUGBOARD_DASHBOARD_DIR").map(PathBuf::from));

/// Paths the guard lets through without the token (Host and Origin are still checked).
pub fn is_public(path: &str) -> bool {
    path == "/"
        || path
            .strip_prefix("/assets/")
            .is_some_and(|name| ASSETS.iter().any(|a| a.name == name))
}

/// `GET /`.
pub async fn page(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /assets/{name}`.
pub async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let asset = &ASSETS[i];
    let common = [
        (header::CONTENT_TYPE, HeaderValue::from_static(asset.mime)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        // Always revalidated: a new binary serves a new page at once.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    if let Some(dir) = DEV_DIR.as_ref() {
        return match std::fs::read(dir.join(asset.name)) {
            Ok(body) => (common, body).into_response(),
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("PLUGBOARD_DASHBOARD_DIR: cannot read {}: {e}", asset.name),
            )
                .into_response(),
        };
    }
    let etag = &ETAGS[i];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let etag = HeaderValue::from_str(etag).expect("hex");
    if fresh {
        return (StatusCode::NOT_MODIFIED, common, [(header::ETAG, etag)]).into_response();
    }
    (common, [(header::ETAG, etag)], asset.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_page_and_its_assets_are_public() {
        assert!(is_public("/"));
        assert!(is_public("/assets/app.js"));
        assert!(!is_public("/assets/"));
        assert!(!is_public("/assets/../api/v1/plugins"));
        assert!(!is_public("/api/v1/plugins"));
        assert!(!is_public("/metrics"));
        assert!(!is_public("/mcp"));
        assert!(!is_public("//"));
    }
}
