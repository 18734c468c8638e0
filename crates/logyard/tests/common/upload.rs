//! Uploads through the API: create, send as the plan says, complete, wait.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Server, client};

pub async fn create(
    server: &Server,
    stream: &str,
    filename: &str,
    body: &[u8],
    content_type: &str,
    format: &str,
) -> Value {
    let r = client()
        .post(server.url("/api/v1/uploads"))
        .json(&json!({"stream": stream, "filename": filename, "size": body.len(), "content_type": content_type, "format": format}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{v}");
    v
}

/// Sends the bytes as the plan says; returns the status.
pub async fn put(plan: &Value, body: Vec<u8>) -> u16 {
    let mut req = client().put(plan["url"].as_str().unwrap());
    for (k, v) in plan["headers"].as_object().unwrap() {
        if k != "content-length" {
            req = req.header(k.as_str(), v.as_str().unwrap());
        }
    }
    req.body(body).send().await.unwrap().status().as_u16()
}

pub async fn complete(server: &Server, id: &str) -> Value {
    let r = client().post(server.url(&format!("/api/v1/uploads/{id}/complete"))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 202);
    r.json().await.unwrap()
}

/// Polls an upload until it is done or failed.
pub async fn finished(server: &Server, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let v: Value =
            client().get(server.url(&format!("/api/v1/uploads/{id}"))).send().await.unwrap().json().await.unwrap();
        if v["state"] == "done" || v["state"] == "failed" {
            return v;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "upload {id} never finished: {v}\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until the upload's original is in a bundle; returns the bundle key.
pub async fn archived(server: &Server, id: &str) -> String {
    let started = Instant::now();
    loop {
        let v: Value =
            client().get(server.url(&format!("/api/v1/uploads/{id}"))).send().await.unwrap().json().await.unwrap();
        if let Some(key) = v["archived"].as_str() {
            return key.to_owned();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "upload {id} never archived: {v}\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
