//! Streams that opt in keep every ingest request body byte-exact in the archive (one tar
//! member per request, compressed as it came), beside the rows it became; other streams keep
//! none, and a restart (which replays the write-ahead log) archives nothing twice.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// (member name, size) of every member of every bundle of `stream`.
fn members(storage: &str, stream: &str) -> Vec<(String, String)> {
    let (code, out, err) = cli(&["archive", "ls", "--stream", stream, "--storage", storage], &[]);
    assert_eq!(code, 0, "{err}");
    let mut all = Vec::new();
    for bundle in out.lines().map(|l| l.split('\t').next().unwrap().to_owned()) {
        let (code, listed, err) = cli(&["archive", "ls", &bundle, "--storage", storage], &[]);
        assert_eq!(code, 0, "{err}");
        all.extend(listed.lines().map(|l| (bundle.clone(), l.split('\t').next().unwrap().to_owned())));
    }
    all
}

async fn post(server: &Server, stream: &str, body: Vec<u8>, encoding: Option<&str>) -> Value {
    let mut req = client()
        .post(server.url(&format!("/api/v1/streams/{stream}/events")))
        .header("content-type", "application/x-ndjson");
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let r = req.body(body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn request_bodies_of_opted_in_streams_are_archived_once_and_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ServerSpec::local(dir.path())
        .env("LOGYARD_ARCHIVE_RAW_STREAMS", "[\"shop-*\"]")
        .env("LOGYARD_ARCHIVE_RAW_MAX_AGE", "1h");
    let mut server = spec.start();
    let storage = spec.storage.clone();

    let plain = format!("{}not json\n", events("plain", 3)).into_bytes();
    let packed = gzip(events("packed", 5).as_bytes());
    let r = post(&server, "shop-web", plain.clone(), None).await;
    assert_eq!((r["accepted"].as_u64(), r["rejected"].as_u64()), (Some(3), Some(1)), "{r}");
    post(&server, "shop-web", packed.clone(), Some("gzip")).await;
    post(&server, "other", events("other", 2).into_bytes(), None).await;

    // Bodies wait for a bundle's worth (or raw_max_age); a flush archives them now.
    let r = client().post(server.url("/api/v1/flush")).send().await.unwrap();
    let flushed: Value = r.json().await.unwrap();
    assert_eq!(flushed["archived_bundles"], 1, "{flushed}");

    let found = members(&storage, "shop-web");
    assert_eq!(found.len(), 2, "one member per request: {found:?}");
    assert!(found[0].1.ends_with(".ndjson") && found[1].1.ends_with(".ndjson.gz"), "{found:?}");
    for ((bundle, name), sent) in found.iter().zip([&plain, &packed]) {
        let got = dir.path().join("got");
        let (code, _, err) =
            cli(&["archive", "get", bundle, name, "-o", got.to_str().unwrap(), "--storage", &storage], &[]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(&std::fs::read(&got).unwrap(), sent, "{name} is the body as sent");
    }
    let (code, index, _) = cli(&["archive", "ls", &found[0].0, "--json", "--storage", &storage], &[]);
    assert_eq!(code, 0);
    let index: Value = serde_json::from_str(&index).unwrap();
    assert_eq!((index[0]["rows"].as_u64(), index[0]["rejected"].as_u64()), (Some(3), Some(1)), "{index}");
    assert_eq!(members(&storage, "other"), [], "streams not named keep no bodies");
    assert_eq!(count(&server, "SELECT count(*) FROM \"shop-web\"").await, 8, "the rows are there too");

    // A restart replays the write-ahead log (its active segment is kept): nothing is
    // archived twice, and new bodies go on from there.
    let (code, _) = server.terminate(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{}", server.logs());
    let server = spec.start();
    let more = events("more", 1).into_bytes();
    post(&server, "shop-web", more.clone(), None).await;
    flush(&server).await;
    let after = members(&storage, "shop-web");
    assert_eq!(after.len(), 3, "{after:?}");
    assert_eq!(after[..2], found[..], "the first bundle is unchanged");
    assert_eq!(count(&server, "SELECT count(*) FROM \"shop-web\"").await, 9);
    let (code, out, err) = cli(&["archive", "verify", "--storage", &storage], &[]);
    assert_eq!(code, 0, "{out}{err}");
}
