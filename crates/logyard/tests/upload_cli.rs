//! `logyard upload`: a directory of small files packed into one tar.zst and ingested through
//! a presigned upload; one file as it is; the token; `--direct` to an S3 prefix.

mod common;

use common::*;

fn write_files(dir: &std::path::Path) -> usize {
    let mut rows = 0;
    for i in 0..25 {
        let sub = dir.join(if i % 2 == 0 { "web" } else { "api" });
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("part-{i:02}.ndjson")), events(&format!("f{i}"), 40)).unwrap();
        rows += 40;
    }
    std::fs::write(dir.join("boot.log"), "2026-11-25T10:00:00Z booting\n2026-11-25T10:00:02Z ready\n").unwrap();
    rows + 2
}

#[test]
fn a_directory_is_packed_uploaded_and_ingested() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, entry) = create_token("uploader", "ingest,query", None);
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, entry).unwrap();
    let server = ServerSpec::local(dir.path()).env("LOGYARD_TOKENS_FILE", tokens.to_str().unwrap()).start();
    let files = dir.path().join("logs");
    let rows = write_files(&files);
    let token_env = vec![("LOGYARD_TOKEN".to_owned(), secret.clone())];

    // Without the token, the server says why.
    let (code, _, err) = cli(&["upload", "--server", &server.base, "--stream", "packed", files.to_str().unwrap()], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("401"), "{err}");

    let (code, out, err) =
        cli(&["upload", "--server", &server.base, "--stream", "packed", files.to_str().unwrap()], &token_env);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("packed 26 files"), "{err}");
    assert!(out.contains(&format!("done, {rows} rows, 0 rejected")), "{out}");
    let (code, out, err) = cli(
        &[
            "query",
            "--server",
            &server.base,
            "--format",
            "csv",
            "SELECT count(*) AS n FROM packed WHERE message LIKE '%ready'",
        ],
        &token_env,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "n\n1\n");

    // One file goes as it is, its format from its name.
    let one = files.join("web/part-00.ndjson");
    let (code, out, err) =
        cli(&["upload", "--server", &server.base, "--stream", "single", one.to_str().unwrap()], &token_env);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("done, 40 rows, 0 rejected"), "{out}");
}

#[test]
fn direct_uploads_go_to_s3_with_the_callers_credentials() {
    let s3 = S3::start();
    let bucket = s3.bucket("drop");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.ndjson");
    std::fs::write(&file, events("d", 500)).unwrap();
    let (code, out, err) =
        cli(&["upload", "--direct", &format!("s3://{bucket}/inbox"), file.to_str().unwrap()], &s3.env());
    assert_eq!(code, 0, "{err}");
    let key = out.trim();
    assert!(key.starts_with("inbox/") && key.ends_with("-app.ndjson"), "{key}");
    let stored = std::fs::read(s3.root.path().join(&bucket).join(key)).unwrap();
    assert_eq!(stored, std::fs::read(&file).unwrap());
}

/// A file larger than the multipart threshold goes in parts, to S3 (s3s-fs, signatures
/// checked) and to local storage alike.
#[test]
fn a_large_file_goes_in_parts() {
    let s3 = S3::start();
    let bucket = s3.bucket("parts");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.ndjson");
    let body = events("m", 120_000);
    assert!(body.len() > 2 * 5_242_880, "{} bytes", body.len());
    std::fs::write(&file, &body).unwrap();
    // The sweeper runs often: it must leave a completed multipart upload being ingested alone.
    let parts_env = [
        ("LOGYARD_UPLOADS_MULTIPART_THRESHOLD", "5242880"),
        ("LOGYARD_UPLOADS_PART_BYTES", "5242880"),
        ("LOGYARD_UPLOADS_SWEEP_INTERVAL", "50ms"),
    ];

    let mut s3_spec = ServerSpec::on_s3(&s3, format!("s3://{bucket}/shop"), dir.path().join("wal-s3"));
    let mut local_spec = ServerSpec::local(&dir.path().join("local"));
    for (k, v) in parts_env {
        s3_spec = s3_spec.env(k, v);
        local_spec = local_spec.env(k, v);
    }
    for spec in [s3_spec, local_spec] {
        let server = spec.start();
        let (code, out, err) =
            cli(&["upload", "--server", &server.base, "--stream", "large", file.to_str().unwrap()], &[]);
        assert_eq!(code, 0, "{err}\n{}", server.logs());
        assert!(out.contains("done, 120000 rows, 0 rejected"), "{out}");
        let (code, out, err) = cli(
            &["query", "--server", &server.base, "--format", "csv", "SELECT count(DISTINCT id) AS n FROM large"],
            &[],
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, "n\n120000\n");
    }
}

/// S3 refuses every attempt at the second part: the run fails, keeping what it sent; the next
/// run asks for fresh URLs of the missing parts only and completes.
#[test]
fn an_interrupted_multipart_upload_resumes_where_it_stopped() {
    let s3 = S3::start();
    let bucket = s3.bucket("resume");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.ndjson");
    std::fs::write(&file, events("r", 120_000)).unwrap();
    let spec = ServerSpec::on_s3(&s3, format!("s3://{bucket}/shop"), dir.path().join("wal"))
        .env("LOGYARD_UPLOADS_MULTIPART_THRESHOLD", "5242880")
        .env("LOGYARD_UPLOADS_PART_BYTES", "5242880");
    let server = spec.start();
    let cache = dir.path().join("cache");
    let env = vec![("XDG_CACHE_HOME".to_owned(), cache.display().to_string())];
    let args = ["upload", "--server", &server.base, "--stream", "resumed", file.to_str().unwrap()];

    s3.faults.set(common::proxy::Fault::RefuseSecondPart);
    let (code, _, err) = cli(&args, &env);
    assert_ne!(code, 0);
    assert!(err.contains("503"), "{err}");
    let states = std::fs::read_dir(cache.join("logyard/uploads")).unwrap().count();
    assert_eq!(states, 1, "what was sent is remembered");

    s3.faults.set(common::proxy::Fault::None);
    let (code, out, err) = cli(&args, &env);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("resuming, 1 of 3 parts already sent"), "{err}");
    assert!(out.contains("done, 120000 rows, 0 rejected"), "{out}");
    let first_parts =
        s3.faults.requests().iter().filter(|r| r.starts_with("PUT") && r.contains("partNumber=1&")).count();
    assert_eq!(first_parts, 1, "part 1 was sent once");
    assert_eq!(std::fs::read_dir(cache.join("logyard/uploads")).unwrap().count(), 0, "the state is gone once done");
}

/// A multipart upload nobody completes is aborted once it expires: S3 forgets its parts and
/// the upload says why it failed.
#[test]
fn an_abandoned_multipart_upload_is_aborted() {
    let s3 = S3::start();
    let bucket = s3.bucket("abandoned");
    let dir = tempfile::tempdir().unwrap();
    let server = ServerSpec::on_s3(&s3, format!("s3://{bucket}/shop"), dir.path().join("wal"))
        .env("LOGYARD_UPLOADS_MULTIPART_THRESHOLD", "5242880")
        .env("LOGYARD_UPLOADS_PART_BYTES", "5242880")
        .env("LOGYARD_UPLOADS_MULTIPART_EXPIRY", "1s")
        .env("LOGYARD_UPLOADS_SWEEP_INTERVAL", "200ms")
        .start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let plan: serde_json::Value = client()
            .post(server.url("/api/v1/uploads"))
            .json(&serde_json::json!({"stream": "gone", "filename": "big.ndjson", "size": 12_000_000, "content_type": "application/x-ndjson", "format": "ndjson"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(plan["parts"].as_array().map(Vec::len), Some(3), "{plan}");
        let id = plan["upload_id"].as_str().unwrap();
        let started = std::time::Instant::now();
        loop {
            let v: serde_json::Value = client()
                .get(server.url(&format!("/api/v1/uploads/{id}")))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if v["state"] == "failed" {
                assert!(v["failure"].as_str().unwrap().contains("not completed before it expired"), "{v}");
                break;
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(30), "{v}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    // The sweeper asked S3 to abort it: a DELETE with the multipart upload's id.
    let aborts = s3.faults.requests().iter().filter(|r| r.starts_with("DELETE") && r.contains("uploadId=")).count();
    assert_eq!(aborts, 1, "{:?}", s3.faults.requests());
    assert!(!server.logs().contains("aborting an expired multipart upload failed"), "{}", server.logs());
}
