//! A loopback HTTP proxy in front of a test server (S3, Kinesis), which can also inject faults.
//!
//! s3s-fs checks `If-None-Match: *` and then writes, so two conditional PUTs of one key at
//! the same instant can both succeed; S3 decides such a race atomically. The proxy restores
//! that: conditional PUTs pass through one at a time. Headers (Host included) are forwarded
//! unchanged, so SigV4 signatures still verify at the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Mutex;

/// What the proxy does to each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    None = 0,
    /// 503 SlowDown, as S3 throttles.
    SlowDown = 1,
    /// 500 InternalError.
    InternalError = 2,
    /// Answers after 3 seconds.
    Delay = 3,
    /// Closes the connection without an answer.
    Reset = 4,
    /// 503 for the second part of multipart uploads only (`partNumber=2`).
    RefuseSecondPart = 5,
    /// Never answers a PUT of a report manifest (`.../manifest.json`); others pass.
    HoldManifest = 6,
    /// Refuses Kinesis GetRecords calls with ProvisionedThroughputExceededException; others pass.
    ThrottleGetRecords = 7,
    /// Never answers a PUT of a Kinesis checkpoint entry that has no pending batch (a lease
    /// renewal, or the entry written after a commit); the others pass.
    HoldSettledCheckpoint = 8,
    /// Refuses STS AssumeRole calls with AccessDenied, saying no identity-based policy allows
    /// them; others pass.
    DenyAssumeRoleByPolicy = 9,
    /// Refuses STS AssumeRole calls with AccessDenied, saying nothing of why; others pass.
    DenyAssumeRole = 10,
}

/// Switches the fault of a running proxy, and keeps the credentials requests were signed with.
#[derive(Debug, Clone, Default)]
pub struct Faults(
    Arc<AtomicU8>,
    Arc<std::sync::Mutex<Vec<Signer>>>,
    Arc<std::sync::Mutex<Vec<String>>>,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<std::sync::Mutex<Vec<String>>>,
);

/// Who signed a request: the access key id, and the session token if any.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Signer {
    pub access_key_id: String,
    pub session_token: Option<String>,
}

impl Faults {
    pub fn set(&self, fault: Fault) {
        self.0.store(fault as u8, Ordering::SeqCst);
    }

    fn get(&self) -> u8 {
        self.0.load(Ordering::SeqCst)
    }

    /// The signers of the requests so far.
    pub fn signers(&self) -> Vec<Signer> {
        self.1.lock().unwrap().clone()
    }

    /// Requests held so far.
    pub fn held(&self) -> usize {
        self.3.load(Ordering::SeqCst)
    }

    /// `METHOD path?query` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.2.lock().unwrap().clone()
    }

    /// The form-encoded request bodies so far (AWS query APIs such as STS).
    pub fn forms(&self) -> Vec<String> {
        self.4.lock().unwrap().clone()
    }

    fn record_form(&self, headers: &hyper::HeaderMap, body: &[u8]) {
        let form = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        if form {
            self.4.lock().unwrap().push(String::from_utf8_lossy(body).into_owned());
        }
    }

    fn record_target(&self, method: &hyper::Method, uri: &hyper::Uri) {
        let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        self.2.lock().unwrap().push(format!("{method} {target}"));
    }

    fn record(&self, headers: &hyper::HeaderMap) {
        let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else { return };
        let Some(rest) = auth.split("Credential=").nth(1) else { return };
        let access_key_id = rest.split('/').next().unwrap_or_default().to_owned();
        let session_token = headers.get("x-amz-security-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
        self.1.lock().unwrap().push(Signer { access_key_id, session_token });
    }
}

/// Starts the proxy on a free loopback port in a thread of its own; returns its address.
pub fn start(upstream: SocketAddr, faults: Faults) -> SocketAddr {
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
                let faults = faults.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let client = client.clone();
                        let conditional = conditional.clone();
                        let fault = faults.get();
                        faults.record(req.headers());
                        faults.record_target(req.method(), req.uri());
                        let fault = if fault == Fault::RefuseSecondPart as u8 {
                            let second = req.uri().query().is_some_and(|q| q.split('&').any(|p| p == "partNumber=2"));
                            if second { Fault::SlowDown as u8 } else { Fault::None as u8 }
                        } else if fault == Fault::HoldManifest as u8 {
                            let manifest =
                                req.method() == hyper::Method::PUT && req.uri().path().ends_with("/manifest.json");
                            if manifest { Fault::HoldManifest as u8 } else { Fault::None as u8 }
                        } else if fault == Fault::HoldSettledCheckpoint as u8 {
                            let entry = req.method() == hyper::Method::PUT
                                && req.uri().path().contains("/checkpoints/kinesis/");
                            if entry { fault } else { Fault::None as u8 }
                        } else if fault == Fault::ThrottleGetRecords as u8 {
                            let target = req.headers().get("x-amz-target").and_then(|v| v.to_str().ok());
                            if target.is_some_and(|t| t.ends_with(".GetRecords")) { fault } else { Fault::None as u8 }
                        } else {
                            fault
                        };
                        let faults = faults.clone();
                        async move { inject(fault, client, upstream, conditional, faults, req).await }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
    });
    addr
}

async fn inject(
    fault: u8,
    client: HttpClient,
    upstream: SocketAddr,
    conditional: Arc<Mutex<()>>,
    faults: Faults,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let error = |status: u16, code: &str| {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected</Message></Error>"
        );
        Response::builder()
            .status(status)
            .header("content-type", "application/xml")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    match fault {
        1 => Ok(error(503, "SlowDown")),
        2 => Ok(error(500, "InternalError")),
        3 => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            forward(client, upstream, conditional, req).await.map_err(std::io::Error::other)
        }
        4 => Err(std::io::Error::other("injected connection reset")),
        8 => {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
            if has_pending(&body) {
                return send(client, upstream, conditional, parts, body).await.map_err(std::io::Error::other);
            }
            faults.3.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Err(std::io::Error::other("held"))
        }
        7 => {
            let body =
                r#"{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded for shard (injected)"}"#;
            Ok(Response::builder()
                .status(400)
                .header("content-type", "application/x-amz-json-1.1")
                .body(Full::new(Bytes::from(body)))
                .unwrap())
        }
        6 => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Err(std::io::Error::other("held"))
        }
        _ => {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
            faults.record_form(&parts.headers, &body);
            let assume_role = body.split(|b| *b == b'&').any(|p| p == b"Action=AssumeRole");
            if assume_role && (fault == Fault::DenyAssumeRoleByPolicy as u8 || fault == Fault::DenyAssumeRole as u8) {
                let why = if fault == Fault::DenyAssumeRoleByPolicy as u8 {
                    " because no identity-based policy allows the sts:AssumeRole action"
                } else {
                    ""
                };
                let body = format!(
                    "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:sts::123456789012:assumed-role/logyard/pod is not authorized to perform: sts:AssumeRole on resource: the role{why}</Message></Error><RequestId>injected</RequestId></ErrorResponse>"
                );
                return Ok(Response::builder()
                    .status(403)
                    .header("content-type", "text/xml")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap());
            }
            send(client, upstream, conditional, parts, body).await.map_err(std::io::Error::other)
        }
    }
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn forward(
    client: HttpClient,
    upstream: SocketAddr,
    conditional: Arc<Mutex<()>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    send(client, upstream, conditional, parts, body).await
}

fn has_pending(body: &[u8]) -> bool {
    body.windows(b"\"pending\"".len()).any(|w| w == b"\"pending\"")
}

async fn send(
    client: HttpClient,
    upstream: SocketAddr,
    conditional: Arc<Mutex<()>>,
    mut parts: hyper::http::request::Parts,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
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
