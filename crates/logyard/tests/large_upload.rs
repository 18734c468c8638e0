//! A 6 GB upload through the API, on local storage and on s3s-fs: sent in parts (through the
//! `PUT .../parts/{n}` stand-in, or to the presigned part URLs), completed, ingested, bundled
//! and archived while the server's peak RSS stays within 512 MiB of its idle RSS. GNU tar
//! lists the bundle, and `logyard archive get` returns the member byte-exact.
//!
//! The upload is generated as it is sent (zeros, with 8 MiB of noise every 256 MiB so that the
//! bundle is many parts long), so it costs the client no disk; the servers write up to ~12 GB
//! under temporary directories, removed at the end. The two tests take turns: they would fight
//! over the two cores and the disk.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Bytes of the upload.
const SIZE: u64 = 6_000_000_000;
/// Noise of this size every `ISLAND_EVERY` bytes makes the bundle several parts long.
const ISLAND: usize = 8 << 20;
const ISLAND_EVERY: u64 = 256 << 20;
const ISLAND_START: u64 = 1 << 20;
/// How far the server's peak RSS may rise above its idle RSS.
const HEADROOM: u64 = 512 << 20;
const HEAD: &str = "2026-11-25T10:00:00Z first\n2026-11-25T10:00:01Z second\n2026-11-25T10:00:02Z third\n";
/// Ends the long line (line 4) of zeros and noise.
const TAIL: &str = "\n2026-11-25T10:59:58Z before last\n2026-11-25T10:59:59Z last\n";

static TAKING_TURNS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The upload: three lines, one line of 6 GB (zeros with islands of noise, no newline), two
/// lines.
struct Upload {
    noise: Vec<u8>,
}

impl Upload {
    fn new() -> Self {
        let mut noise = vec![0u8; ISLAND];
        std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut noise).unwrap();
        for b in noise.iter_mut().filter(|b| **b == b'\n') {
            *b = b' ';
        }
        Self { noise }
    }

    /// The bytes `offset..offset + buf.len()` (of zeros already).
    fn fill(&self, offset: u64, buf: &mut [u8]) {
        let end = offset + buf.len() as u64;
        let mut copy = |at: u64, data: &[u8]| {
            let (from, to) = (at.max(offset), (at + data.len() as u64).min(end));
            if from < to {
                buf[(from - offset) as usize..(to - offset) as usize]
                    .copy_from_slice(&data[(from - at) as usize..(to - at) as usize]);
            }
        };
        copy(0, HEAD.as_bytes());
        let mut island = offset.saturating_sub(ISLAND_START) / ISLAND_EVERY * ISLAND_EVERY + ISLAND_START;
        while island < end && island + (ISLAND as u64) < SIZE - TAIL.len() as u64 {
            copy(island, &self.noise);
            island += ISLAND_EVERY;
        }
        copy(SIZE - TAIL.len() as u64, TAIL.as_bytes());
    }
}

/// A figure of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in bytes.
fn proc_status(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(&format!("{field}:"))).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb << 10
}

fn mib(bytes: u64) -> u64 {
    bytes >> 20
}

/// Sends the upload in the parts of the plan, two at a time; returns the parts' ETags and
/// the upload's SHA-256.
async fn send_parts(plan: &Value, upload: &Upload) -> (Vec<Value>, String) {
    use futures::StreamExt;
    let parts = plan["parts"].as_array().expect("a multipart plan").clone();
    let mut sha = Sha256::new();
    let mut offset = 0u64;
    let mut buf = bytes::BytesMut::new();
    let http = client();
    // Each part read and hashed in order, then sent while the next is read.
    let bodies = parts.into_iter().map(|part| {
        let size = part["size"].as_u64().unwrap() as usize;
        // The buffer of a part whose request has ended is taken again.
        buf.reserve(size);
        buf.resize(size, 0);
        upload.fill(offset, &mut buf);
        offset += size as u64;
        sha.update(&buf);
        (part, buf.split().freeze())
    });
    let sent: Vec<Value> = futures::stream::iter(bodies)
        .map(|(part, body)| {
            let mut request = http.put(part["url"].as_str().unwrap());
            for (k, v) in part["headers"].as_object().unwrap() {
                if k != "content-length" {
                    request = request.header(k.as_str(), v.as_str().unwrap());
                }
            }
            async move {
                let answer = request.body(body).send().await.unwrap();
                let status = answer.status().as_u16();
                let etag = answer.headers().get("etag").map(|v| v.to_str().unwrap().to_owned());
                assert_eq!(status, 200, "part {}: {}", part["part_number"], answer.text().await.unwrap());
                json!({"part_number": part["part_number"], "etag": etag.expect("an ETag")})
            }
        })
        .buffered(2)
        .collect()
        .await;
    assert_eq!(offset, SIZE, "the parts cover the file");
    (sent, hex(&sha.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Polls an upload until `done` says so, for at most `limit`.
async fn wait_for(server: &Server, id: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    let http = client();
    loop {
        let v: Value =
            http.get(server.url(&format!("/api/v1/uploads/{id}"))).send().await.unwrap().json().await.unwrap();
        if done(&v) || v["state"] == "failed" {
            return v;
        }
        assert!(started.elapsed() < limit, "upload {id} is stuck: {v}\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The SHA-256 and length of what `logyard archive get` writes to stdout, read as it comes.
fn archive_get(bundle: &str, member: &str, storage: &str, env: &[(String, String)]) -> (String, u64) {
    let mut child = Command::new(BIN)
        .args(["archive", "get", bundle, member, "--storage", storage])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        total += n as u64;
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "archive get: {}", String::from_utf8_lossy(&out.stderr));
    (hex(&sha.finalize()), total)
}

/// Where the backend under test keeps things.
struct Backend {
    /// `--storage` of the server and the CLI.
    storage: String,
    /// The directory that holds the storage root's objects as files.
    files: PathBuf,
    env: Vec<(String, String)>,
    /// What the bundler says it checked the stored bundle by.
    checked: &'static str,
}

async fn a_large_upload_is_archived_in_bounded_memory(backend: Backend, work: &Path) {
    let started = Instant::now();
    let upload = Upload::new();
    let mut spec = ServerSpec {
        listen: None,
        storage: backend.storage.clone(),
        wal_dir: work.join("wal"),
        env: backend.env.clone(),
    };
    spec.env.push(("LOGYARD_UPLOADS_SWEEP_INTERVAL".into(), "200ms".into()));
    spec.env.push(("LOGYARD_ARCHIVE_BUNDLE_MAX_AGE".into(), "0s".into()));
    let server = spec.start();
    let idle = proc_status(server.pid(), "VmRSS");

    let r = client()
        .post(server.url("/api/v1/uploads"))
        .json(&json!({"stream": "big", "filename": "huge.log", "size": SIZE, "content_type": "text/plain", "format": "text"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let plan: Value = r.json().await.unwrap();
    let id = plan["upload_id"].as_str().unwrap().to_owned();
    let (etags, sha256) = send_parts(&plan, &upload).await;
    let sent = started.elapsed();
    let r = client()
        .post(server.url(&format!("/api/v1/uploads/{id}/complete")))
        .timeout(Duration::from_secs(600))
        .json(&json!({"parts": etags}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202, "{}", r.text().await.unwrap());
    let completed = started.elapsed();
    let done = wait_for(&server, &id, Duration::from_secs(600), |v| v["state"] == "done").await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!((done["rows"].as_u64(), done["rejected"].as_u64()), (Some(5), Some(1)), "{done}");
    assert_eq!(done["errors"][0]["line"], 4, "the long line is rejected by number: {done}");
    let ingested = started.elapsed();
    let archived = wait_for(&server, &id, Duration::from_secs(600), |v| v["archived"].is_string()).await;
    let bundle = archived["archived"].as_str().unwrap_or_else(|| panic!("not archived: {archived}")).to_owned();
    let bundled = started.elapsed();
    let peak = proc_status(server.pid(), "VmHWM");
    let logs = server.logs();
    drop(server);
    let stored = logs.lines().find(|l| l.contains("archive bundle stored")).expect("the bundle's log line");
    let stored: Value = serde_json::from_str(stored).unwrap();
    eprintln!(
        "{}: idle RSS {} MiB, peak {} MiB; at {sent:.1?} sent, {completed:.1?} completed, {ingested:.1?} ingested, \
         {bundled:.1?} archived ({} bytes in {} parts, checked by {})",
        backend.storage,
        mib(idle),
        mib(peak),
        stored["bytes"],
        stored["parts"],
        stored["checked"],
    );
    assert!(peak < idle + HEADROOM, "peak RSS {} MiB, idle {} MiB", mib(peak), mib(idle));
    assert_eq!(stored["checked"], backend.checked, "{stored}");
    assert!(stored["parts"].as_u64().unwrap() > 5, "the bundle went in many parts: {stored}");

    // GNU tar lists the one member of the bundle as the store keeps it, while the CLI returns
    // the original, byte-exact.
    let member = format!("{id}/huge.log");
    let tar = Command::new("tar")
        .arg("--zstd")
        .arg("-tf")
        .arg(backend.files.join(&bundle))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (got, bytes) = archive_get(&bundle, &member, &backend.storage, &backend.env);
    assert_eq!((got, bytes), (sha256, SIZE));
    let read_back = started.elapsed();
    let listing = tar.wait_with_output().unwrap();
    assert!(listing.status.success(), "{}", String::from_utf8_lossy(&listing.stderr));
    assert_eq!(String::from_utf8_lossy(&listing.stdout).trim(), member);
    eprintln!("{}: at {read_back:.1?} read back by the CLI, {:.1?} listed by tar", backend.storage, started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_6_gb_upload_on_local_storage() {
    let _turn = TAKING_TURNS.lock().await;
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let backend =
        Backend { storage: data.display().to_string(), files: data.clone(), env: Vec::new(), checked: "length" };
    a_large_upload_is_archived_in_bounded_memory(backend, work.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_6_gb_upload_on_s3() {
    let _turn = TAKING_TURNS.lock().await;
    let s3 = S3::start();
    let bucket = s3.bucket("big");
    let work = tempfile::tempdir().unwrap();
    let backend = Backend {
        storage: format!("s3://{bucket}/shop"),
        files: s3.root.path().join(&bucket).join("shop"),
        env: s3.env(),
        checked: "etag",
    };
    a_large_upload_is_archived_in_bounded_memory(backend, work.path()).await;
}
