//! The console: the browser front end under `/ui/`, embedded in the binary, so that it works
//! with no Node.js at build or run time and nothing fetched from elsewhere (an air-gapped VPC).
//! It uses only the public API, with a Bearer token the page keeps in the tab's
//! sessionStorage. Assets are served with a strict Content-Security-Policy (scripts, styles
//! and connections to this server only; no inline code, no eval), `X-Frame-Options: DENY`,
//! `nosniff`, no cookies; gzipped once, on first use, for browsers that take it. A browser
//! opening `/` is sent to the console; every other client of `/` (shippers probing for
//! Elasticsearch) still gets the info document.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};

use crate::elastic;

/// The console's files: path under `/ui/`, bytes, content type.
const ASSETS: &[(&str, &[u8], &str)] = &[
    ("index.html", include_bytes!("../console/index.html"), "text/html; charset=utf-8"),
    ("app.js", include_bytes!("../console/app.js"), JS),
    ("api.js", include_bytes!("../console/api.js"), JS),
    ("nav.js", include_bytes!("../console/nav.js"), JS),
    ("dom.js", include_bytes!("../console/dom.js"), JS),
    ("chart.js", include_bytes!("../console/chart.js"), JS),
    ("search.js", include_bytes!("../console/search.js"), JS),
    ("sql.js", include_bytes!("../console/sql.js"), JS),
    ("streams.js", include_bytes!("../console/streams.js"), JS),
    ("alerts.js", include_bytes!("../console/alerts.js"), JS),
    ("reports.js", include_bytes!("../console/reports.js"), JS),
    ("tail.js", include_bytes!("../console/tail.js"), JS),
    ("style.css", include_bytes!("../console/style.css"), CSS),
    ("vendor/uPlot.esm.js", include_bytes!("../console/vendor/uPlot.esm.js"), JS),
    ("vendor/uPlot.min.css", include_bytes!("../console/vendor/uPlot.min.css"), CSS),
];
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The console's pages: paths the single page answers itself.
const PAGES: &[&str] = &["", "search", "sql", "streams", "alerts", "reports"];

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// An asset ready to serve: its bytes, gzipped bytes and entity tag.
struct Prepared {
    path: &'static str,
    content_type: &'static str,
    plain: &'static [u8],
    gzip: Vec<u8>,
    etag: HeaderValue,
}

fn prepared() -> &'static [Prepared] {
    static PREPARED: OnceLock<Vec<Prepared>> = OnceLock::new();
    PREPARED.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(path, plain, content_type)| {
                use std::io::Write;
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                gz.write_all(plain).expect("writing to memory");
                let digest = Sha256::digest(plain);
                let etag = format!("\"{}\"", hex::encode(&digest[..12]));
                Prepared {
                    path,
                    content_type,
                    plain,
                    gzip: gz.finish().expect("writing to memory"),
                    etag: HeaderValue::from_str(&etag).expect("hex"),
                }
            })
            .collect()
    })
}

/// Whether a request comes from a browser that wants a page (not from an API client).
pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| accept.contains("text/html"))
}

/// `GET /`: browsers go to the console, everyone else gets the Elasticsearch info document.
pub(crate) async fn root(headers: HeaderMap) -> Response {
    if wants_html(&headers) {
        return Redirect::to("/ui/search").into_response();
    }
    elastic::info().await
}

/// `GET /ui` and `/ui/`.
pub(crate) async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /ui/{*path}`: an asset, or the page for one of the console's own paths.
pub(crate) async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let page = path.split('/').next().unwrap_or_default();
    if PAGES.contains(&page) && !path.contains('.') {
        return serve("index.html", &headers);
    }
    serve(&path, &headers)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = prepared().iter().find(|a| a.path == path) else {
        return with_security_headers((StatusCode::NOT_FOUND, "no such file in the console").into_response());
    };
    let unchanged = headers.get(header::IF_NONE_MATCH).is_some_and(|tag| tag == asset.etag);
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else if gzip {
        ([(header::CONTENT_ENCODING, "gzip")], asset.gzip.clone()).into_response()
    } else {
        asset.plain.into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(header::ETAG, asset.etag.clone());
    // Revalidated on every load (the file names carry no version), cheap with the ETag.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    with_security_headers(response)
}

fn with_security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_served_compressed_with_its_type() {
        let total: usize = prepared().iter().map(|a| a.gzip.len()).sum();
        assert!(total < 300_000, "the console's first load is {total} bytes gzipped");
        for a in prepared() {
            assert!(!a.plain.is_empty(), "{}", a.path);
            assert!(a.gzip.len() < a.plain.len(), "{}", a.path);
        }
    }

    #[test]
    fn every_file_of_the_console_directory_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let name = path.strip_prefix(&root).unwrap().to_str().unwrap().replace('\\', "/");
                if name.ends_with(".LICENSE") {
                    continue;
                }
                assert!(
                    ASSETS.iter().any(|(p, ..)| *p == name),
                    "console/{name} is not in ASSETS: it would not be served"
                );
            }
        }
    }

    #[test]
    fn browsers_are_told_apart_from_api_clients() {
        let mut h = HeaderMap::new();
        assert!(!wants_html(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wants_html(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"));
        assert!(wants_html(&h));
    }
}
