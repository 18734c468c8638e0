//! `logyard upload`: files to a logyard server through presigned direct uploads, many small
//! files packed first into one seekable tar.zst (client-side merging), with retries and a
//! progress bar; or, with `--direct`, straight to an S3 prefix with the caller's own AWS
//! credentials.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::{Value, json};

use logyard_ingest::uploads::UploadFormat;
use logyard_ingest::uploads::read::format_of_name;
use logyard_storage::archive::{BundleIndex, BundleWriter, MemberInfo};

use crate::server_client::answer;

/// A file to send, and the name it gets.
struct Source {
    path: PathBuf,
    name: String,
}

/// The files named by `paths`: files as given, directories walked, globs expanded.
fn collect(paths: &[String]) -> anyhow::Result<Vec<Source>> {
    let mut out = Vec::new();
    for p in paths {
        let matches: Vec<PathBuf> = if p.contains(['*', '?', '[']) {
            glob::glob(p).with_context(|| format!("pattern {p:?}"))?.filter_map(Result::ok).collect()
        } else {
            vec![PathBuf::from(p)]
        };
        if matches.is_empty() {
            bail!("{p:?} matches no file");
        }
        for m in matches {
            let meta = std::fs::metadata(&m).with_context(|| format!("{}", m.display()))?;
            if meta.is_dir() {
                walk(&m, &m, &mut out)?;
            } else {
                let name = m.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                out.push(Source { path: m, name });
            }
        }
    }
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Source>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))?.collect();
    entries.sort_by_key(|e| e.as_ref().map(|e| e.path()).ok());
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            walk(root, &path, out)?;
        } else if path.is_file() {
            let name = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
            out.push(Source { path, name });
        }
    }
    Ok(())
}

/// What goes over the wire: one file as it is, or many packed into one tar.zst.
struct Payload {
    path: PathBuf,
    filename: String,
    format: UploadFormat,
    content_type: &'static str,
    size: u64,
    /// Keeps a packed bundle alive until it is sent.
    _temp: Option<tempfile::TempPath>,
}

fn prepare(sources: Vec<Source>, format: Option<UploadFormat>) -> anyhow::Result<Payload> {
    if sources.len() == 1 {
        let s = &sources[0];
        let lower = s.name.to_ascii_lowercase();
        let tar = [".tar", ".tar.zst", ".tar.gz", ".tgz"].iter().any(|ext| lower.ends_with(ext));
        let format = format.unwrap_or(if tar { UploadFormat::Tar } else { format_of_name(&s.name) });
        let size = std::fs::metadata(&s.path)?.len();
        let content_type = if lower.ends_with(".gz") || lower.ends_with(".tgz") {
            "application/gzip"
        } else if lower.ends_with(".zst") {
            "application/zstd"
        } else if format == UploadFormat::Tar {
            "application/x-tar"
        } else {
            match format {
                UploadFormat::Ndjson => "application/x-ndjson",
                UploadFormat::Json => "application/json",
                _ => "text/plain",
            }
        };
        let filename = Path::new(&s.name).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return Ok(Payload { path: s.path.clone(), filename, format, content_type, size, _temp: None });
    }
    // Many files: one seekable tar.zst, each file a member read by its own extension.
    let temp = tempfile::Builder::new().prefix("logyard-upload-").suffix(".tar.zst").tempfile()?;
    let (file, path) = temp.into_parts();
    let index = pack_into(&sources, file, 3, 1 << 20)?;
    let filename = format!("bundle-{}-files.tar.zst", index.members.len());
    Ok(Payload {
        path: path.to_path_buf(),
        filename,
        format: UploadFormat::Tar,
        content_type: "application/zstd",
        size: index.bytes,
        _temp: Some(path),
    })
}

/// Writes the sources into `file` as a bundle.
fn pack_into(sources: &[Source], file: std::fs::File, level: i32, frame_bytes: u64) -> anyhow::Result<BundleIndex> {
    let mut writer = BundleWriter::new(std::io::BufWriter::with_capacity(1 << 20, file), level, frame_bytes);
    for s in sources {
        let meta = std::fs::metadata(&s.path)?;
        let mtime =
            meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
        let file = std::fs::File::open(&s.path).with_context(|| format!("{}", s.path.display()))?;
        writer
            .append(MemberInfo { name: s.name.clone(), mtime, ..Default::default() }, meta.len(), file)
            .with_context(|| format!("packing {}", s.path.display()))?;
    }
    let (out, index) = writer.finish()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(index)
}

/// `logyard archive pack`: a bundle at `output` and its index beside it.
pub fn pack(paths: &[String], output: &Path, level: i32, frame_bytes: u64) -> anyhow::Result<BundleIndex> {
    let sources = collect(paths)?;
    let file = std::fs::File::create(output).with_context(|| format!("creating {}", output.display()))?;
    let index = pack_into(&sources, file, level, frame_bytes)?;
    let name = output.to_string_lossy();
    let index_path = format!("{}.index.json", name.strip_suffix(".tar.zst").unwrap_or(&name));
    std::fs::write(&index_path, index.to_json()).with_context(|| format!("writing {index_path}"))?;
    Ok(index)
}

fn progress_bar(len: u64) -> indicatif::ProgressBar {
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(len);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bytes}/{total_bytes} {wide_bar} {binary_bytes_per_sec} ETA {eta}",
            )
            .expect("a valid template"),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    }
}

/// `size` bytes of a file from `offset`, counted into `bar` as they are read.
async fn file_range_body(
    path: &Path,
    offset: u64,
    size: u64,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<reqwest::Body> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let bar = bar.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(size), 1 << 20).inspect(move |chunk| {
        if let Ok(c) = chunk {
            bar.inc(c.len() as u64);
        }
    });
    Ok(reqwest::Body::wrap_stream(stream))
}

pub struct UploadArgs {
    pub server: String,
    pub token: Option<String>,
    pub stream: String,
    pub format: Option<UploadFormat>,
    pub paths: Vec<String>,
}

/// Uploads through a logyard server; prints the upload id and its outcome.
pub async fn run(args: UploadArgs) -> anyhow::Result<()> {
    let sources = collect(&args.paths)?;
    let count = sources.len();
    let payload = tokio::task::spawn_blocking(move || prepare(sources, args.format)).await??;
    if count > 1 {
        eprintln!("packed {count} files into {} bytes of tar.zst", payload.size);
    }
    let base = args.server.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3600)).build()?;
    let auth = |r: reqwest::RequestBuilder| match &args.token {
        Some(t) => r.bearer_auth(t),
        None => r,
    };
    // A single file sent in parts can be resumed: what was sent is kept beside the cache.
    let state_path =
        if count == 1 && payload._temp.is_none() { resume_path(&base, &args.stream, &payload) } else { None };
    let mut resumed: Option<ResumeState> =
        state_path.as_ref().and_then(|p| std::fs::read(p).ok()).and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(state) = &resumed {
        let status = answer::<Value>(auth(client.get(format!("{base}/api/v1/uploads/{}", state.upload_id)))).await;
        if !status.is_ok_and(|s| s["state"] == "pending") {
            resumed = None;
        }
    }
    let bar = progress_bar(payload.size);
    let (id, completion) = match resumed {
        Some(mut state) => {
            let id = state.upload_id.clone();
            let missing: Vec<u32> = (1..=state.parts).filter(|n| !state.etags.contains_key(n)).collect();
            eprintln!(
                "upload {id}: resuming, {} of {} parts already sent",
                state.parts as usize - missing.len(),
                state.parts
            );
            let fresh: Value = answer(auth(
                client
                    .post(format!("{base}/api/v1/uploads/{id}/parts"))
                    .json(&json!({"part_numbers": missing, "token": state.token})),
            ))
            .await?;
            let parts = fresh["parts"].as_array().cloned().unwrap_or_default();
            bar.set_position(payload.size - parts.iter().filter_map(|p| p["size"].as_u64()).sum::<u64>());
            send_parts(&client, &parts, &payload, &bar, &mut state, state_path.as_deref()).await?;
            (id, state.completion())
        }
        None => {
            let request = json!({
                "stream": args.stream,
                "filename": payload.filename,
                "size": payload.size,
                "content_type": payload.content_type,
                "format": payload.format,
            });
            let plan: Value = answer(auth(client.post(format!("{base}/api/v1/uploads")).json(&request))).await?;
            let id = plan["upload_id"].as_str().context("the server's plan has no upload_id")?.to_owned();
            eprintln!("upload {id}: sending {} bytes", payload.size);
            let completion = match plan["parts"].as_array() {
                // A large file: each part to its own URL, then completion with the parts' ETags.
                Some(parts) => {
                    let first = parts.first().context("a multipart plan without parts")?;
                    let mut state = ResumeState {
                        upload_id: id.clone(),
                        parts: parts.len() as u32,
                        part_size: first["size"].as_u64().unwrap_or_default(),
                        token: first["url"]
                            .as_str()
                            .and_then(|u| url::Url::parse(u).ok())
                            .and_then(|u| u.query_pairs().find(|(k, _)| k == "token").map(|(_, v)| v.into_owned())),
                        etags: Default::default(),
                    };
                    send_parts(&client, parts, &payload, &bar, &mut state, state_path.as_deref()).await?;
                    state.completion()
                }
                None => {
                    send(&client, &plan, &payload.path, 0, payload.size, &bar, &id).await?;
                    json!({})
                }
            };
            (id, completion)
        }
    };
    bar.finish_and_clear();

    answer::<Value>(auth(client.post(format!("{base}/api/v1/uploads/{id}/complete")).json(&completion))).await?;
    if let Some(p) = &state_path {
        let _ = std::fs::remove_file(p);
    }
    loop {
        let status: Value = answer(auth(client.get(format!("{base}/api/v1/uploads/{id}")))).await?;
        match status["state"].as_str() {
            Some("done") => {
                println!("upload {id}: done, {} rows, {} rejected", status["rows"], status["rejected"]);
                for e in status["errors"].as_array().into_iter().flatten().take(10) {
                    let file = e["file"].as_str().map(|f| format!("{f} ")).unwrap_or_default();
                    println!("  {file}line {}: {}", e["line"], e["message"].as_str().unwrap_or_default());
                }
                return Ok(());
            }
            Some("failed") => bail!("upload {id}: failed: {}", status["failure"].as_str().unwrap_or("?")),
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// What a multipart upload has sent so far, kept so that an interrupted run can resume.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ResumeState {
    upload_id: String,
    parts: u32,
    part_size: u64,
    /// The local-storage capability of the part URLs.
    token: Option<String>,
    etags: std::collections::BTreeMap<u32, String>,
}

impl ResumeState {
    fn completion(&self) -> Value {
        let parts: Vec<Value> = self.etags.iter().map(|(n, e)| json!({"part_number": n, "etag": e})).collect();
        json!({ "parts": parts })
    }
}

/// Where the resume state of a file's upload lives: the user's cache, keyed by the server,
/// the stream and the file (path, size, modification time).
fn resume_path(base: &str, stream: &str, payload: &Payload) -> Option<PathBuf> {
    use sha2::Digest;
    let path = std::fs::canonicalize(&payload.path).ok()?;
    let mtime = std::fs::metadata(&path).ok()?.modified().ok()?;
    let key = format!("{base}\n{stream}\n{}\n{}\n{mtime:?}", path.display(), payload.size);
    let digest = sha2::Sha256::digest(key.as_bytes());
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let dir = cache.join("logyard/uploads");
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir.join(format!("{}.json", digest.iter().take(16).map(|b| format!("{b:02x}")).collect::<String>())))
}

/// Sends the given parts (skipping those already sent), saving the state after each.
async fn send_parts(
    client: &reqwest::Client,
    parts: &[Value],
    payload: &Payload,
    bar: &indicatif::ProgressBar,
    state: &mut ResumeState,
    state_path: Option<&Path>,
) -> anyhow::Result<()> {
    for part in parts {
        let size = part["size"].as_u64().context("a part without a size")?;
        let n = part["part_number"].as_u64().context("a part without a number")? as u32;
        if state.etags.contains_key(&n) {
            continue;
        }
        let offset = u64::from(n - 1) * state.part_size;
        let etag = send(client, part, &payload.path, offset, size, bar, &state.upload_id).await?;
        state.etags.insert(n, etag);
        if let Some(p) = state_path {
            std::fs::write(p, serde_json::to_vec(state)?).with_context(|| format!("saving {}", p.display()))?;
        }
    }
    Ok(())
}

/// Sends `size` bytes of `path` from `offset` as `target` (a plan or one of its parts) says,
/// retrying with backoff; returns the answer's ETag.
async fn send(
    client: &reqwest::Client,
    target: &Value,
    path: &Path,
    offset: u64,
    size: u64,
    bar: &indicatif::ProgressBar,
    id: &str,
) -> anyhow::Result<String> {
    let url = target["url"].as_str().context("the plan has no url")?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut put = client.put(url);
        for (k, v) in target["headers"].as_object().into_iter().flatten() {
            if k != "content-length" {
                put = put.header(k.as_str(), v.as_str().unwrap_or_default());
            }
        }
        let body = file_range_body(path, offset, size, bar).await?;
        let sent = put.header("content-length", size).body(body).send().await;
        let etag = |r: &reqwest::Response| {
            r.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
        };
        match sent {
            Ok(r) if r.status().is_success() => return Ok(etag(&r)),
            // A retry of a PUT that landed: the object is there.
            Ok(r) if r.status().as_u16() == 412 && attempt > 1 => return Ok(etag(&r)),
            Ok(r) if r.status().is_server_error() && attempt < 5 => {
                eprintln!("upload {id}: the storage answered {}; retrying", r.status());
            }
            Ok(r) => {
                let status = r.status();
                bail!("upload {id}: the storage refused the data: {status} {}", r.text().await.unwrap_or_default());
            }
            Err(e) if attempt < 5 => eprintln!("upload {id}: {e}; retrying"),
            Err(e) => return Err(e).context(format!("upload {id}: sending the data")),
        }
        bar.set_position(bar.position().saturating_sub(size));
        tokio::time::sleep(Duration::from_millis(500 * (1 << attempt))).await;
    }
}

/// `--direct`: puts the payload under an S3 prefix with the caller's credentials.
pub async fn direct(
    paths: Vec<String>,
    format: Option<UploadFormat>,
    target: logyard_storage::Storage,
) -> anyhow::Result<()> {
    use object_store::ObjectStoreExt;
    let sources = collect(&paths)?;
    let payload = tokio::task::spawn_blocking(move || prepare(sources, format)).await??;
    let key = format!(
        "{}/{}-{}",
        logyard_core::time::date_string(logyard_core::time::now_micros()),
        uuid::Uuid::now_v7().simple(),
        payload.filename
    );
    let path = target.path(&key);
    let bar = progress_bar(payload.size);
    let upload = target.root_store().put_multipart(&path).await.context("starting the upload")?;
    let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, 16 << 20);
    let mut file = tokio::fs::File::open(&payload.path).await?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        use tokio::io::AsyncReadExt;
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        writer.wait_for_capacity(4).await?;
        writer.write(&buf[..n]);
        bar.inc(n as u64);
    }
    writer.finish().await.context("finishing the upload")?;
    bar.finish_and_clear();
    println!("{}", target.full_key(&key));
    Ok(())
}
