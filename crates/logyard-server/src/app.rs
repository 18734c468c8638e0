//! The router with every route, and `run(listener, state, shutdown)`. The only module that
//! names the handler modules; none of them imports it.

use std::time::Duration;

use axum::Router;
use axum::middleware;
use axum::routing::{delete, get, post, put};
use tokio::net::TcpListener;

use crate::middleware::{admit, authenticate, observe};
use crate::state::AppState;
use crate::{
    alerts, api, console, downloads, elastic, firehose, forget, loki, ndjson, otlp, reports, saved, search, tail,
    uploads,
};

/// The router with every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/streams/{stream}/events", post(ndjson::ingest))
        .route("/api/v1/streams", get(api::list_streams))
        .route("/api/v1/streams/{stream}", get(api::get_stream))
        .route("/api/v1/query", post(api::query))
        .route("/api/v1/search", post(search::search))
        .route("/api/v1/tail", get(tail::tail))
        .route("/api/v1/downloads", post(downloads::create))
        .route("/api/v1/downloads/{ticket}", get(downloads::get))
        .route("/api/v1/saved-searches", get(saved::list).post(saved::create))
        .route("/api/v1/saved-searches/{id}", delete(saved::delete))
        .route("/api/v1/alerts", get(alerts::list).post(alerts::put))
        .route("/api/v1/alerts/preview", post(alerts::preview))
        .route("/api/v1/alerts/{name}", delete(alerts::delete))
        .route("/api/v1/alerts/{name}/ack", post(alerts::ack))
        .route("/api/v1/silences", get(alerts::silences).post(alerts::add_silence))
        .route("/api/v1/silences/{id}", delete(alerts::delete_silence))
        .route("/api/v1/flush", post(api::flush))
        .route("/api/v1/forget", post(forget::create))
        .route("/api/v1/forget/{id}", get(forget::get))
        .route("/api/v1/reports", get(reports::list))
        .route("/api/v1/reports/daily/{date}", get(reports::daily_html))
        .route("/api/v1/reports/daily/{date}/{file}", get(reports::daily_file))
        .route("/api/v1/uploads", post(uploads::create))
        .route("/api/v1/uploads/{id}", get(uploads::status))
        .route("/api/v1/uploads/{id}/complete", post(uploads::complete))
        .route("/api/v1/uploads/{id}/data", put(uploads::put_data))
        .route("/api/v1/uploads/{id}/parts", post(uploads::parts))
        .route("/api/v1/uploads/{id}/parts/{n}", put(uploads::put_part))
        .route("/api/v1/firehose/{stream}", post(firehose::deliver))
        .route("/v1/logs", post(otlp::http))
        .route("/loki/api/v1/push", post(loki::push))
        .route("/", get(console::root).head(elastic::info))
        .route("/ui", get(console::index))
        .route("/ui/", get(console::index))
        .route("/ui/{*path}", get(console::asset))
        .route("/api/v1/session", get(api::session))
        .route("/_license", get(elastic::license))
        .route("/_cluster/health", get(elastic::cluster_health))
        .route("/_bulk", post(elastic::bulk).put(elastic::bulk))
        .route("/{index}/_bulk", post(elastic::bulk_index).put(elastic::bulk_index))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .fallback(api::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), admit))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then lets requests in flight finish.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shutdown = stop_tails(&state, shutdown);
    axum::serve(listener, router(state).into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// Like [`run`], over TLS. Requests in flight get `grace` after `shutdown` resolves.
pub async fn run_tls(
    listener: std::net::TcpListener,
    tls: axum_server::tls_rustls::RustlsConfig,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let shutdown = stop_tails(&state, shutdown);
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(grace));
    });
    axum_server::from_tcp_rustls(listener, tls)?
        .handle(handle)
        .serve(router(state).into_make_service_with_connect_info::<std::net::SocketAddr>())
        .await
}

/// `shutdown`, which first ends the responses that would never end by themselves (tails).
fn stop_tails(
    state: &AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let stopping = state.stopping.clone();
    async move {
        shutdown.await;
        stopping.stop();
    }
}
