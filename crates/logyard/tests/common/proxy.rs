//! A loopback HTTP proxy in front of the S3 test server.
//!
//! s3s-fs checks `If-None-Match: *` and then writes, so two conditional PUTs of one key at
//! the same instant can both succeed; S3 decides such a race atomically. The proxy restores
//! that: conditional PUTs pass through one at a time. Headers (Host included) are forwarded
//! unchanged, so SigV4 signatures still verify at the server.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Mutex;

/// Starts the proxy on a free loopback port in a thread of its own; returns its address.
pub fn start(upstream: SocketAddr) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            let conditional = Arc::new(Mutex::new(()));
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let client = client.clone();
                let conditional = conditional.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let client = client.clone();
                        let conditional = conditional.clone();
                        async move { forward(client, upstream, conditional, req).await }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
    });
    addr
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn forward(
    client: HttpClient,
    upstream: SocketAddr,
    conditional: Arc<Mutex<()>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (mut parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
    parts.uri = format!("http://{upstream}{path}").parse().unwrap();
    let serialize = parts.method == hyper::Method::PUT && parts.headers.contains_key("if-none-match");
    let _guard = if serialize { Some(conditional.lock().await) } else { None };
    let response = match client.request(Request::from_parts(parts, Full::new(body))).await {
        Ok(r) => r,
        Err(e) => {
            return Ok(Response::builder().status(502).body(Full::new(Bytes::from(format!("proxy: {e}")))).unwrap());
        }
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}
