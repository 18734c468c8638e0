//! HTTPS without a load balancer (certificates reloaded on change), and client addresses
//! from X-Forwarded-For only behind trusted proxies.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

async fn served_certificate(client: &reqwest::Client, url: &str) -> Vec<u8> {
    let r = client.get(url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|t| t.peer_certificate().map(|c| c.to_vec()))
        .expect("TLS info")
}

fn der_of(pem_file: &Path) -> Vec<u8> {
    let out = Command::new("openssl").args(["x509", "-outform", "DER", "-in"]).arg(pem_file).output().unwrap();
    out.stdout
}

#[tokio::test]
async fn https_with_a_certificate_that_is_reloaded_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), "ca");
    make_server_cert(dir.path(), "ca", "one", "DNS:localhost,IP:127.0.0.1");
    make_server_cert(dir.path(), "ca", "two", "DNS:localhost,IP:127.0.0.1");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::copy(dir.path().join("one.crt"), &cert).unwrap();
    std::fs::copy(dir.path().join("one.key"), &key).unwrap();

    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--storage"])
        .arg(dir.path().join("data"))
        .env("LOGYARD_SERVER_TLS_CERT_FILE", &cert)
        .env("LOGYARD_SERVER_TLS_KEY_FILE", &key)
        .env("LOGYARD_SERVER_TLS_RELOAD_INTERVAL", "300ms")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
    let base = line.trim().strip_prefix("logyard listening on ").unwrap().to_owned();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");

    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.path().join("ca.crt")).unwrap()).unwrap();
    let client = reqwest::Client::builder().add_root_certificate(ca).tls_info(true).build().unwrap();
    let url = format!("{base}/healthz");
    assert_eq!(served_certificate(&client, &url).await, der_of(&dir.path().join("one.crt")));

    // Plain HTTP to the TLS port does not get an answer in clear.
    let plain = client.get(url.replace("https://", "http://")).send().await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    std::fs::copy(dir.path().join("two.crt"), &cert).unwrap();
    std::fs::copy(dir.path().join("two.key"), &key).unwrap();
    let expected = der_of(&dir.path().join("two.crt"));
    let started = Instant::now();
    loop {
        // A new client: a new connection, a new handshake.
        let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.path().join("ca.crt")).unwrap()).unwrap();
        let fresh = reqwest::Client::builder().add_root_certificate(ca).tls_info(true).build().unwrap();
        if served_certificate(&fresh, &url).await == expected {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "the new certificate was not picked up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

async fn audit_client(server: &Server, forwarded_for: &str) -> String {
    let r = client().post(server.url("/api/v1/flush")).header("x-forwarded-for", forwarded_for).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let rows = rows(server, "SELECT client FROM \"logyard-audit\" ORDER BY timestamp DESC LIMIT 1").await;
    rows[0]["client"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn x_forwarded_for_counts_only_from_trusted_proxies() {
    let dir = tempfile::tempdir().unwrap();
    let behind_alb =
        ServerSpec::local(&dir.path().join("a")).env("LOGYARD_SERVER_TRUSTED_PROXIES", "[\"127.0.0.0/8\"]").start();
    assert_eq!(audit_client(&behind_alb, "203.0.113.7").await, "203.0.113.7");
    // A client's own X-Forwarded-For entry before the proxy's is not believed.
    assert_eq!(audit_client(&behind_alb, "1.2.3.4, 203.0.113.8").await, "203.0.113.8");

    let exposed = ServerSpec::local(&dir.path().join("b")).start();
    assert_eq!(audit_client(&exposed, "203.0.113.7").await, "127.0.0.1");
}
