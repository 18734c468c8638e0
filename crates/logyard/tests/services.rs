//! The server's components are supervised: a component that panics is logged and restarted,
//! or stops the process, as ARCHITECTURE.md says of it. The panic is injected with
//! `LOGYARD_FAULT_PANIC=<component>`, which only debug builds honour.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Waits until the server's log holds `needle`.
fn wait_for_log(server: &Server, needle: &str) -> String {
    let started = Instant::now();
    loop {
        let logs = server.logs();
        if logs.contains(needle) {
            return logs;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no {needle:?} in the logs:\n{logs}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_background_component_that_panics_is_logged_and_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerSpec::local(dir.path()).env("LOGYARD_FAULT_PANIC", "maintenance").start();
    let logs = wait_for_log(&server, "component failed; restarting it");
    let line = logs.lines().find(|l| l.contains("component failed; restarting it")).unwrap();
    let entry: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(entry["level"], "ERROR", "{line}");
    assert_eq!(entry["component"], "maintenance", "{line}");
    assert!(entry["error"].as_str().unwrap().contains("panicked: fault injected"), "{line}");
    assert!(logs.contains("\"panic\""), "the panic itself is logged:\n{logs}");
    // Everything else goes on.
    let (status, body) = ingest(&server, "after", "{\"a\":1}\n", "?ack=commit").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(count(&server, "SELECT count(*) FROM after").await, 1);
    let (code, _) = server.terminate(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{}", server.logs());
}

#[tokio::test]
async fn a_listener_that_panics_stops_the_process_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerSpec::local(dir.path()).env("LOGYARD_FAULT_PANIC", "http").start();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "still running:\n{}", server.logs());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1), "{}", server.logs());
    let logs = server.logs();
    assert!(logs.contains("component failed; stopping the server"), "{logs}");
    assert!(logs.contains("error: component http: it panicked: fault injected into component http"), "{logs}");
}
