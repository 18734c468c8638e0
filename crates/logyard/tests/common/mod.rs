//! Test fixtures: the logyard binary as a child process, an S3 server (s3s-fs) with
//! signature checks, and a small HTTP client. Everything listens on 127.0.0.1 only.
//!
//! A fixture that needs a program that is missing fails the test with a message saying how
//! to get it (`scripts/test.sh` installs everything); nothing is skipped.

#![allow(dead_code)]

pub mod balancer;
pub mod kinesis;
pub mod load;
pub mod pg;
pub mod proxy;
pub mod suite;
pub mod tail;
pub mod upload;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_logyard");

/// This crate's directory in the checkout the tests run from: cargo names it at run time, so
/// a test binary built from another checkout sharing the target directory still finds the
/// files beside its sources.
pub fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// A `logyard serve` child process.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub base: String,
    pub storage: String,
    pub wal_dir: PathBuf,
    pub env: Vec<(String, String)>,
    stderr_log: PathBuf,
}

/// How to start a server.
#[derive(Clone)]
pub struct ServerSpec {
    pub storage: String,
    pub wal_dir: PathBuf,
    pub env: Vec<(String, String)>,
    /// Address to listen on (default: a free port on 127.0.0.1).
    pub listen: Option<String>,
}

impl ServerSpec {
    pub fn local(dir: &Path) -> Self {
        Self {
            storage: dir.join("data").display().to_string(),
            wal_dir: dir.join("wal"),
            env: Vec::new(),
            listen: None,
        }
    }

    /// A server whose tables are at `storage` (an `s3://` URL) on `s3`, with its write-ahead
    /// log in `wal_dir`.
    pub fn on_s3(s3: &S3, storage: String, wal_dir: PathBuf) -> Self {
        Self { storage, wal_dir, env: s3.env(), listen: None }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn start(&self) -> Server {
        let log_dir = self.wal_dir.parent().unwrap_or(Path::new("/tmp")).to_path_buf();
        std::fs::create_dir_all(&log_dir).unwrap();
        let stderr_log = log_dir.join(format!("server-{}.log", std::process::id()));
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&stderr_log).unwrap();
        let mut cmd = Command::new(BIN);
        let listen = self.listen.as_deref().unwrap_or("127.0.0.1:0");
        cmd.args(["serve", "--listen", listen, "--storage", &self.storage, "--wal-dir"])
            .arg(&self.wal_dir)
            .env("LOGYARD_INGEST_FLUSH_INTERVAL", "300ms")
            .env("LOGYARD_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning logyard");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let Some(url) = line.trim().strip_prefix("logyard listening on http://") else {
            let _ = child.kill();
            panic!(
                "logyard did not start; stdout: {line:?}; stderr:\n{}",
                std::fs::read_to_string(&stderr_log).unwrap_or_default()
            );
        };
        let addr: SocketAddr = url.parse().unwrap();
        Server {
            child,
            addr,
            base: format!("http://{addr}"),
            storage: self.storage.clone(),
            wal_dir: self.wal_dir.clone(),
            env: self.env.clone(),
            stderr_log,
        }
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code and how long it took.
    pub fn terminate(&mut self, limit: Duration) -> (Option<i32>, Duration) {
        let started = Instant::now();
        signal(self.pid(), "TERM");
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), started.elapsed());
            }
            if started.elapsed() > limit {
                self.kill9();
                panic!("logyard did not exit within {limit:?} of SIGTERM; logs:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: i32, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap()
}

/// Posts NDJSON; returns the status and JSON body.
pub async fn ingest(server: &Server, stream: &str, body: impl Into<reqwest::Body>, query: &str) -> (u16, Value) {
    let r = client()
        .post(server.url(&format!("/api/v1/streams/{stream}/events{query}")))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Runs SQL (json format); returns the status and JSON body.
pub async fn query(server: &Server, sql: &str) -> (u16, Value) {
    let r = client().post(server.url("/api/v1/query")).json(&serde_json::json!({"sql": sql})).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Runs SQL and returns the rows, failing the test on an error.
pub async fn rows(server: &Server, sql: &str) -> Vec<Value> {
    let (status, body) = query(server, sql).await;
    assert_eq!(status, 200, "{sql}: {body}");
    body["rows"].as_array().unwrap().clone()
}

pub async fn count(server: &Server, sql: &str) -> i64 {
    let r = rows(server, sql).await;
    r[0].as_object().unwrap().values().next().unwrap().as_i64().unwrap()
}

pub async fn flush(server: &Server) {
    let r = client().post(server.url("/api/v1/flush")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
}

/// The value of metric `name` whose labels are exactly `labels` (in any order) in a
/// Prometheus text exposition; `None` when there is no such series.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    wanted.sort();
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, mut got) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.strip_suffix('}')?.split(',').map(str::to_owned).collect::<Vec<_>>()),
            None => (series, Vec::new()),
        };
        got.sort();
        (metric == name && got == wanted).then(|| value.parse().ok()).flatten()
    })
}

/// [`metric_value`] of the server's `/metrics`.
pub async fn metric(server: &Server, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    metric_value(&text, name, labels)
}

/// Runs `logyard` with arguments and returns (exit code, stdout, stderr).
pub fn cli(args: &[&str], env: &[(String, String)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until the test server `what` listens on `port` (failing after `limit`), then puts a
/// fault proxy in front of it: the proxy's address and its faults.
pub fn behind_proxy(what: &str, port: u16, limit: Duration) -> (SocketAddr, proxy::Faults) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < limit, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let faults = proxy::Faults::default();
    (proxy::start(SocketAddr::from(([127, 0, 0, 1], port)), faults.clone()), faults)
}

/// Finds a program: an environment variable naming its path, else `PATH`.
pub fn program(var: &str, name: &str, how: &str) -> PathBuf {
    if let Ok(p) = std::env::var(var) {
        let p = PathBuf::from(p);
        assert!(p.exists(), "{var}={} does not exist; {how}", p.display());
        return p;
    }
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path.split(':') {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} is required by this test and was not found (set {var} or put it on PATH); {how}");
}

/// Runs openssl in `dir`.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is needed by this test");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (`name.crt`, `name.key`) in `dir`.
pub fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=logyard test {name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A server certificate (`name.crt`, `name.key`, readable by its owner only) for the
/// subject alternative names `san` (`DNS:localhost,IP:127.0.0.1`), signed by the CA `ca`.
pub fn make_server_cert(dir: &Path, ca: &str, name: &str, san: &str) {
    let (key, csr, crt, ext) =
        (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("{name}.ext"));
    let subject = "/CN=localhost";
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    );
    std::fs::write(dir.join(&ext), format!("subjectAltName={san}\nextendedKeyUsage=serverAuth\n")).unwrap();
    let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &crt,
            "-extfile",
            &ext,
        ],
    );
    std::fs::set_permissions(dir.join(&key), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
}

/// Where scripts/test.sh installed the npm packages the tests run (kinesalite, pg).
pub fn node_modules() -> String {
    let modules = std::env::var("LOGYARD_NODE_MODULES").unwrap_or_else(|_| {
        panic!("LOGYARD_NODE_MODULES is not set; scripts/test.sh installs the npm packages and sets it")
    });
    assert!(Path::new(&modules).is_dir(), "{modules} does not exist; scripts/test.sh installs it");
    modules
}

/// An s3s-fs server on loopback that checks SigV4 signatures, behind [`proxy`].
pub struct S3 {
    child: Child,
    /// Faults the proxy in front of the server injects.
    pub faults: proxy::Faults,
    pub endpoint: String,
    pub root: tempfile::TempDir,
    pub access_key: String,
    pub secret_key: String,
}

impl S3 {
    pub fn start() -> S3 {
        let bin = program("LOGYARD_S3S_FS", "s3s-fs", "scripts/test.sh installs s3s-fs 0.14.1 with cargo install");
        let root = tempfile::tempdir().unwrap();
        let port = free_port();
        let (access_key, secret_key) = ("logyard-test-key".to_owned(), "logyard-test-secret-0123456789".to_owned());
        let child = Command::new(bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--access-key",
                &access_key,
                "--secret-key",
                &secret_key,
            ])
            .arg(root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning s3s-fs");
        let (proxy, faults) = behind_proxy("s3s-fs", port, Duration::from_secs(10));
        S3 { child, faults, endpoint: format!("http://{proxy}"), root, access_key, secret_key }
    }

    /// Creates a bucket (a directory of the server's root).
    pub fn bucket(&self, name: &str) -> String {
        std::fs::create_dir_all(self.root.path().join(name)).unwrap();
        name.to_owned()
    }

    /// The environment a logyard process needs to reach this server.
    pub fn env(&self) -> Vec<(String, String)> {
        aws_env("AWS_ENDPOINT_URL", &self.endpoint, &self.access_key, &self.secret_key)
    }
}

/// The environment of a logyard process whose AWS calls go to `endpoint` (named by
/// `endpoint_var`, e.g. `AWS_ENDPOINT_URL_KINESIS`) with static credentials; the SDK is kept
/// away from ~/.aws and IMDS.
pub fn aws_env(endpoint_var: &str, endpoint: &str, access_key: &str, secret_key: &str) -> Vec<(String, String)> {
    [
        (endpoint_var, endpoint),
        ("AWS_ACCESS_KEY_ID", access_key),
        ("AWS_SECRET_ACCESS_KEY", secret_key),
        ("AWS_REGION", "us-east-1"),
        ("AWS_CONFIG_FILE", "/nonexistent"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` storefront-like events with ids `{prefix}-{i}`.
pub fn events(prefix: &str, n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        out.push_str(&format!(
            "{{\"timestamp\":\"2026-11-25T10:{:02}:{:02}Z\",\"id\":\"{prefix}-{i}\",\"route\":\"/cart\",\"status\":{},\"latency_ms\":{}.5}}\n",
            (i / 60) % 60,
            i % 60,
            if i % 50 == 0 { 500 } else { 200 },
            i % 300
        ));
    }
    out
}

/// A moto server on loopback (STS, Secrets Manager, Kinesis, S3; it checks no signatures),
/// and the proxy in front of it, which records who signed each request.
pub struct Moto {
    child: Child,
    pub endpoint: String,
    /// The same server through the proxy.
    pub proxied: String,
    pub faults: proxy::Faults,
}

impl Moto {
    pub fn start() -> Moto {
        let bin =
            program("LOGYARD_MOTO_SERVER", "moto_server", "scripts/test.sh installs moto[server] in its Python venv");
        // A free port can be taken by another test's server between its choice and moto's
        // bind (then what answered on it was that server, and moto has exited): try another.
        for _ in 0..3 {
            let port = free_port();
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawning moto_server");
            let (proxy, faults) = behind_proxy("moto_server", port, Duration::from_secs(30));
            if Self::answers(port) {
                let endpoint = format!("http://127.0.0.1:{port}");
                return Moto { child, endpoint, proxied: format!("http://{proxy}"), faults };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto_server exited after starting three times (its port taken each time?)");
    }

    /// Whether moto answers on `port` (its API lists its data).
    fn answers(port: u16) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
        let request =
            format!("GET /moto-api/data.json HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        let mut answer = String::new();
        stream.write_all(request.as_bytes()).is_ok()
            && stream.read_to_string(&mut answer).is_ok()
            && answer.starts_with("HTTP/1.1 200")
            && answer.contains("Werkzeug")
    }

    /// Creates an S3 bucket (moto takes an unsigned request).
    pub fn bucket(&self, name: &str) -> String {
        use std::io::{Read, Write};
        let addr = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(stream, "PUT /{name} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "creating bucket {name}: {answer}");
        name.to_owned()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes a token with `logyard token create`; returns (secret, TOML entry).
pub fn create_token(name: &str, scopes: &str, streams: Option<&str>) -> (String, String) {
    let mut args = Vec::new();
    if let Some(s) = streams {
        args.extend(["--streams", s]);
    }
    create_token_with(name, scopes, &args)
}

/// Makes a token with `logyard token create` and more of its flags (`--deny-fields ...`).
pub fn create_token_with(name: &str, scopes: &str, flags: &[&str]) -> (String, String) {
    let mut args = vec!["token", "create", "--name", name, "--scopes", scopes];
    args.extend(flags);
    let (code, out, err) = cli(&args, &[]);
    assert_eq!(code, 0, "{err}");
    let secret = out.split_whitespace().find(|w| w.starts_with("lyt_")).expect("a secret in the output").to_owned();
    let entry = out[out.find("[[auth.tokens]]").expect("an entry")..].to_owned();
    (secret, entry)
}

/// gzip of `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// 600 storefront events over the last 50 minutes before `now` (ids e000…e599): four routes,
/// statuses 200/404/500/503, levels, latencies, sessions, order ids on payments.
pub fn storefront_events(now: chrono::DateTime<chrono::Utc>) -> String {
    let routes = ["/products/{id}", "/cart", "/checkout", "/api/payments"];
    let mut out = String::new();
    for i in 0..600i64 {
        let time = now - chrono::Duration::seconds(3000 - i * 5);
        let route = routes[i as usize % 4];
        let status = [200, 200, 200, 404, 500, 503][i as usize % 6];
        let level = match status {
            500.. => "error",
            400.. => "warn",
            _ => "info",
        };
        let method = if route == "/checkout" { "POST" } else { "GET" };
        let line = serde_json::json!({
            "timestamp": time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "id": format!("e{i:03}"),
            "route": route,
            "status": status,
            "level": level,
            "latency_ms": 10.0 + (i % 50) as f64 * 3.5,
            "session_id": format!("s-{}", i % 40),
            "order_id": if route == "/api/payments" { serde_json::json!(format!("o-{i:05}")) } else { Value::Null },
            "message": format!("{method} {route} {status}"),
            "http": {"method": method},
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

/// Whether `needle` is anywhere in the files under `dir`: in the bytes as stored, in the
/// decompressed bytes of zstd files (archive bundles), and in every value of every Parquet
/// file (whose pages are compressed). The server may still be running: a file or directory
/// deleted during the walk (an old lease entry, a server's temporary file) holds nothing.
pub fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) if gone(&e) => continue,
            Err(e) => panic!("{}: {e}", d.display()),
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if gone(&e) => continue,
                Err(e) => panic!("{}: {e}", path.display()),
            };
            let mut texts = vec![bytes.clone()];
            if bytes.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]) {
                let tar = zstd::decode_all(&bytes[..]).unwrap();
                // The members of a bundle, gzip ones decompressed too.
                let mut members = tar::Archive::new(&tar[..]);
                for entry in members.entries().into_iter().flatten().flatten() {
                    let mut data = Vec::new();
                    if std::io::Read::read_to_end(&mut { entry }, &mut data).is_ok() && data.starts_with(&[0x1f, 0x8b])
                    {
                        let mut plain = Vec::new();
                        let _ =
                            std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&data[..]), &mut plain);
                        texts.push(plain);
                    }
                }
                texts.push(tar);
            }
            if path.extension().is_some_and(|e| e == "parquet") {
                texts.push(parquet_values(&path).into_bytes());
            }
            if texts.iter().any(|t| t.windows(needle.len()).any(|w| w == needle.as_bytes())) {
                hits.push(path.display().to_string());
            }
        }
    }
    hits
}

/// Every value of a Parquet file as text.
pub fn parquet_values(path: &Path) -> String {
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string()
}
