//! Direct uploads: presigned PUTs checked by s3s-fs (right size once; tampered, expired,
//! other key, other size refused), the local-storage data URL with the same checks, ingest
//! with row counts and line numbers, the sweeper, and the originals archived byte-exact in
//! seekable tar.zst bundles that GNU tar reads.

mod common;

use std::time::Duration;

use common::upload::*;
use common::*;
use serde_json::{Value, json};

fn body_with_bad_lines() -> Vec<u8> {
    let mut body = events("up", 100).into_bytes();
    body.extend_from_slice(b"this is not json\n");
    body.extend_from_slice(&events("up2", 20).into_bytes());
    body
}

#[tokio::test]
async fn local_uploads_are_checked_ingested_and_archived_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ServerSpec::local(dir.path())
        .env("LOGYARD_UPLOADS_SWEEP_INTERVAL", "200ms")
        .env("LOGYARD_ARCHIVE_BUNDLE_MAX_AGE", "0s");
    let server = spec.start();
    let body = body_with_bad_lines();

    let plan = create(&server, "uploaded", "../shop/app log.ndjson", &body, "application/x-ndjson", "ndjson").await;
    assert_eq!(plan["method"], "PUT");
    assert_eq!(plan["headers"]["content-length"], body.len().to_string());
    // The same checks as S3 makes: another size, another type, no capability.
    let mut short = body.clone();
    short.pop();
    assert_eq!(put(&plan, short).await, 400);
    let mut wrong_type = plan.clone();
    wrong_type["headers"]["content-type"] = json!("text/plain");
    assert_eq!(put(&wrong_type, body.clone()).await, 400);
    let mut no_capability = plan.clone();
    let url = plan["url"].as_str().unwrap();
    no_capability["url"] = json!(format!("{}{}", &url[..url.len() - 4], "0000"));
    assert_eq!(put(&no_capability, body.clone()).await, 403);
    // Completing before anything arrived is refused.
    let id = plan["upload_id"].as_str().unwrap();
    let r = client().post(server.url(&format!("/api/v1/uploads/{id}/complete"))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 409);

    assert_eq!(put(&plan, body.clone()).await, 200);
    assert_eq!(put(&plan, body.clone()).await, 412, "an upload URL works once");
    complete(&server, id).await;
    let done = finished(&server, id).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!((done["rows"].as_u64(), done["rejected"].as_u64()), (Some(120), Some(1)));
    assert_eq!(done["errors"][0]["line"], 101);
    assert_eq!(done["filename"], "app_log.ndjson");
    assert!(done.get("data_token_sha256").is_none());
    assert_eq!(count(&server, "SELECT count(*) FROM uploaded").await, 120);

    // The original, archived byte-exact.
    let bundle = archived(&server, id).await;
    assert!(bundle.starts_with("archive/uploaded/date="), "{bundle}");
    let storage = spec.storage.clone();
    let member = format!("{id}/app_log.ndjson");
    let (code, out, err) = cli(&["archive", "ls", "--storage", &storage], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&bundle), "{out}");
    let got = dir.path().join("got");
    let (code, _, err) =
        cli(&["archive", "get", &bundle, &member, "-o", got.to_str().unwrap(), "--storage", &storage], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(&got).unwrap(), body);
    let file = std::path::Path::new(&storage).join(&bundle);
    let listing = std::process::Command::new("tar").arg("--zstd").arg("-tf").arg(&file).output().unwrap();
    assert!(listing.status.success(), "{}", String::from_utf8_lossy(&listing.stderr));
    assert_eq!(String::from_utf8_lossy(&listing.stdout).trim(), member);
    let extract = dir.path().join("x");
    std::fs::create_dir_all(&extract).unwrap();
    let status =
        std::process::Command::new("tar").arg("--zstd").arg("-xf").arg(&file).arg("-C").arg(&extract).status().unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read(extract.join(&member)).unwrap(), body);
    let (code, out, _) = cli(&["archive", "verify", "--storage", &storage], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok\t"), "{out}");
    // The incoming object is gone once archived.
    let incoming = std::path::Path::new(&storage).join("incoming/uploaded").join(time_dir(&done)).join(id);
    assert!(!incoming.join("app_log.ndjson").exists());
    assert!(!std::path::Path::new(&storage).join("incoming/uploaded").exists(), "no empty directories are left");

    // A changed byte is caught.
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&file, bytes).unwrap();
    let (code, out, _) = cli(&["archive", "verify", "--storage", &storage], &[]);
    assert_ne!(code, 0);
    assert!(out.starts_with("DAMAGED\t"), "{out}");
    // Reading the member fails too, though it streams: to stdout, and to a file, which is removed.
    let (code, _, err) = cli(&["archive", "get", &bundle, &member, "--storage", &storage], &[]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains(&member), "{err}");
    let damaged = dir.path().join("damaged");
    let (code, _, _) =
        cli(&["archive", "get", &bundle, &member, "-o", damaged.to_str().unwrap(), "--storage", &storage], &[]);
    assert_ne!(code, 0);
    assert!(!damaged.exists(), "no partial output is left");
}

fn time_dir(record: &Value) -> String {
    record["created_at"].as_str().unwrap()[..10].to_owned()
}

#[tokio::test]
async fn requests_are_validated_before_anything_is_signed() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerSpec::local(dir.path()).env("LOGYARD_UPLOADS_MAX_BYTES", "1000").start();
    for (body, code) in [
        (
            json!({"stream": "Bad Name", "filename": "a", "size": 1, "content_type": "text/plain", "format": "text"}),
            400,
        ),
        (json!({"stream": "s", "filename": "a", "size": 0, "content_type": "text/plain", "format": "text"}), 400),
        (json!({"stream": "s", "filename": "a", "size": 1001, "content_type": "text/plain", "format": "text"}), 413),
        (json!({"stream": "s", "filename": "a", "size": 1, "content_type": "nonsense", "format": "text"}), 400),
        (json!({"stream": "s", "filename": "a", "size": 1, "content_type": "text/plain", "format": "xml"}), 400),
        (json!({"stream": "s", "filename": "/", "size": 1, "content_type": "text/plain", "format": "text"}), 400),
    ] {
        let r = client().post(server.url("/api/v1/uploads")).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, code, "{body}: {v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    let r = client().get(server.url("/api/v1/uploads/0123abc")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

#[tokio::test]
async fn presigned_urls_are_enforced_by_s3_and_the_sweeper_finishes_abandoned_uploads() {
    let s3 = S3::start();
    let bucket = s3.bucket("uploads");
    let dir = tempfile::tempdir().unwrap();
    let mut spec = ServerSpec::on_s3(&s3, format!("s3://{bucket}/shop"), dir.path().join("wal"));
    spec.env.push(("LOGYARD_UPLOADS_URL_EXPIRY".into(), "3s".into()));
    spec.env.push(("LOGYARD_UPLOADS_SWEEP_INTERVAL".into(), "300ms".into()));
    spec.env.push(("LOGYARD_ARCHIVE_BUNDLE_MAX_AGE".into(), "1h".into()));
    let server = spec.start();
    let body = body_with_bad_lines();
    let plan = create(&server, "direct", "app.ndjson", &body, "application/x-ndjson", "ndjson").await;
    let url = plan["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&s3.endpoint), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");

    // Refused by S3: another size, a tampered signature, another key, another type.
    let mut short = body.clone();
    short.truncate(body.len() - 1);
    assert_eq!(put(&plan, short).await, 403);
    let mut tampered = plan.clone();
    let sig = url.rfind("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let flipped = if &url[sig..sig + 1] == "a" { "b" } else { "a" };
    tampered["url"] = json!(format!("{}{flipped}{}", &url[..sig], &url[sig + 1..]));
    assert_eq!(put(&tampered, body.clone()).await, 403);
    let mut other_key = plan.clone();
    other_key["url"] = json!(url.replace("/app.ndjson?", "/other.ndjson?"));
    assert_eq!(put(&other_key, body.clone()).await, 403);
    let mut other_type = plan.clone();
    other_type["headers"]["content-type"] = json!("text/plain");
    assert_eq!(put(&other_type, body.clone()).await, 403);

    // The right request works; the client never completes it: the sweeper ingests it once
    // the upload's time has passed.
    assert_eq!(put(&plan, body.clone()).await, 200);
    assert_eq!(put(&plan, body.clone()).await, 412, "the URL writes the object once");
    let id = plan["upload_id"].as_str().unwrap();
    let done = finished(&server, id).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["rows"], 120);
    assert_eq!(count(&server, "SELECT count(*) FROM direct").await, 120);

    // After expiry, the URL is refused.
    let late = create(&server, "direct", "late.ndjson", &body, "application/x-ndjson", "ndjson").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(put(&late, body.clone()).await, 403);
    let id = late["upload_id"].as_str().unwrap();
    let failed = finished(&server, id).await;
    assert_eq!(failed["state"], "failed");
    assert!(failed["failure"].as_str().unwrap().contains("expired"), "{failed}");
}

#[tokio::test]
async fn a_tar_upload_is_read_member_by_member() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerSpec::local(dir.path()).start();
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        builder.append_data(&mut h, name, data).unwrap();
    };
    add("web/a.ndjson", events("a", 30).as_bytes());
    add("web/b.json", br#"[{"id":"b1"},{"id":"b2"},"nope"]"#);
    add("web/c.log", b"2026-11-25T10:00:00Z started\n2026-11-25T10:00:01Z ready\n");
    let tar = zstd::encode_all(&builder.into_inner().unwrap()[..], 3).unwrap();
    let plan = create(&server, "bundle", "logs.tar.zst", &tar, "application/zstd", "tar").await;
    assert_eq!(put(&plan, tar).await, 200);
    let id = plan["upload_id"].as_str().unwrap();
    complete(&server, id).await;
    let done = finished(&server, id).await;
    assert_eq!((done["rows"].as_u64(), done["rejected"].as_u64()), (Some(30 + 2 + 2), Some(1)), "{done}");
    assert_eq!(done["errors"][0]["file"], "web/b.json");
    assert_eq!(done["errors"][0]["line"], 3);
    assert_eq!(count(&server, "SELECT count(*) FROM bundle WHERE message LIKE '%ready%'").await, 1);
}

/// On local storage the parts of a multipart upload are written in place: completing with a
/// part missing is refused and names it, a part sent twice is harmless, and the completed file
/// is the original, byte-exact, with nothing left beside it.
#[tokio::test]
async fn local_multipart_parts_land_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let spec = in_parts_of_5_mib(dir.path()).env("LOGYARD_ARCHIVE_BUNDLE_MAX_AGE", "0s");
    let server = spec.start();
    let body = events("mp", 120_000).into_bytes();
    let plan = create(&server, "parted", "big.ndjson", &body, "application/x-ndjson", "ndjson").await;
    let id = plan["upload_id"].as_str().unwrap().to_owned();
    let parts = plan["parts"].as_array().unwrap().clone();
    assert_eq!(parts.len(), 3, "{plan}");
    let send = |n: usize| {
        let part = parts[n - 1].clone();
        let start = (n - 1) * 5_242_880;
        let data = body[start..(start + part["size"].as_u64().unwrap() as usize)].to_vec();
        async move { put(&part, data).await }
    };
    assert_eq!(send(3).await, 200);
    assert_eq!(send(1).await, 200);
    let mut short = parts[1].clone();
    short["size"] = json!(10);
    assert_eq!(put(&short, vec![b'x'; 10]).await, 400, "a part of another size is refused");
    let r = client().post(server.url(&format!("/api/v1/uploads/{id}/complete"))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 409);
    assert!(r.text().await.unwrap().contains("part 2 was not uploaded yet"));
    assert_eq!(send(2).await, 200);
    assert_eq!(send(2).await, 200, "a part sent again lands in the same place");
    complete(&server, &id).await;
    let done = finished(&server, &id).await;
    assert_eq!((done["state"].as_str(), done["rows"].as_u64()), (Some("done"), Some(120_000)), "{done}");

    let bundle = archived(&server, &id).await;
    let got = dir.path().join("got");
    let member = format!("{id}/big.ndjson");
    let (code, _, err) =
        cli(&["archive", "get", &bundle, &member, "-o", got.to_str().unwrap(), "--storage", &spec.storage], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read(&got).unwrap() == body, "the original, byte-exact");
    assert!(!std::path::Path::new(&spec.storage).join("incoming/parted").exists(), "nothing is left in incoming/");
}

/// A local multipart upload nobody completes fails once it expires, and its parts go.
#[tokio::test]
async fn an_expired_local_multipart_upload_leaves_no_parts() {
    let dir = tempfile::tempdir().unwrap();
    let spec = in_parts_of_5_mib(dir.path()).env("LOGYARD_UPLOADS_MULTIPART_EXPIRY", "2s");
    let server = spec.start();
    let body = events("gone", 120_000).into_bytes();
    let plan = create(&server, "parted", "big.ndjson", &body, "application/x-ndjson", "ndjson").await;
    let id = plan["upload_id"].as_str().unwrap().to_owned();
    let first = &plan["parts"][0];
    assert_eq!(put(first, body[..5_242_880].to_vec()).await, 200);
    let dir_of_upload = std::path::Path::new(&spec.storage)
        .join("incoming/parted")
        .join(time_dir(&plan_record(&server, &id).await))
        .join(&id);
    assert!(dir_of_upload.join("big.ndjson.partial").exists());
    let failed = finished(&server, &id).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(failed["failure"].as_str().unwrap().contains("expired"), "{failed}");
    assert!(!dir_of_upload.join("big.ndjson.partial").exists(), "the partial file is deleted");
    assert!(!dir_of_upload.join("big.ndjson.parts").exists(), "the part markers are deleted");
}

/// A local server whose uploads over 5 MiB go in parts of 5 MiB, swept often.
fn in_parts_of_5_mib(dir: &std::path::Path) -> ServerSpec {
    ServerSpec::local(dir)
        .env("LOGYARD_UPLOADS_MULTIPART_THRESHOLD", "5242880")
        .env("LOGYARD_UPLOADS_PART_BYTES", "5242880")
        .env("LOGYARD_UPLOADS_SWEEP_INTERVAL", "200ms")
}

async fn plan_record(server: &Server, id: &str) -> Value {
    client().get(server.url(&format!("/api/v1/uploads/{id}"))).send().await.unwrap().json().await.unwrap()
}
