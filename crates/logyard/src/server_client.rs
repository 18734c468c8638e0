//! The commands that talk to a running server (`query --server`, `search --server`, `upload`)
//! read its answers here: the body of a success, or the server's error message.

use anyhow::{Context, bail};
use serde_json::Value;

/// Sends a request; the body of a successful answer, or an error with the server's message.
pub(crate) async fn answer_bytes(request: reqwest::RequestBuilder) -> anyhow::Result<bytes::Bytes> {
    let r = request.send().await.context("reaching the logyard server")?;
    let status = r.status();
    let body = r.bytes().await.context("reading the logyard server's answer")?;
    if !status.is_success() {
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("the server answered {status}: {message}");
    }
    Ok(body)
}

/// Like [`answer_bytes`], read as JSON.
pub(crate) async fn answer<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder) -> anyhow::Result<T> {
    let body = answer_bytes(request).await?;
    serde_json::from_slice(&body).context("the server's answer is not the JSON expected")
}
