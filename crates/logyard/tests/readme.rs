//! The README's first command, run as it is written, starts a server that answers. (Once a
//! second binary in the workspace made `cargo run` ambiguous while every other test passed.)
//!
//! It builds the release binary when the build directory (`CARGO_TARGET_DIR`, shared with
//! the rest of the tests) does not have it yet.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// The first line of the README's first code block, without its comment.
fn first_command(readme: &str) -> String {
    let block = readme.split("```").nth(1).expect("the README opens with a code block");
    let line = block.lines().nth(1).expect("a command in the first code block");
    line.split('#').next().unwrap().trim().to_owned()
}

#[tokio::test]
async fn the_first_command_of_the_readme_serves() {
    let root = common::crate_dir().join("../..").canonicalize().unwrap();
    let command = first_command(&std::fs::read_to_string(root.join("README.md")).unwrap());
    assert_eq!(command, "cargo run --release -- serve", "the README's first command changed: update this test");
    let words: Vec<&str> = command.split_whitespace().collect();

    // Run from a scratch directory inside the clone (cargo finds the workspace above it), so
    // that the default data directory `./logyard-data` lands there. `/target` is ignored by git.
    let scratch_parent = root.join("target");
    std::fs::create_dir_all(&scratch_parent).unwrap();
    let scratch = tempfile::Builder::new().prefix("readme-").tempdir_in(&scratch_parent).unwrap();
    let mut cargo = Command::new(words[0]);
    // As from a shell: without the variables `cargo test` gives this test. A build script of a
    // dependency (ring's) reruns when CARGO_MANIFEST_DIR changes, which would rebuild half the
    // release build that the shared target directory already has.
    for (name, _) in std::env::vars() {
        let from_cargo_test = ["CARGO_MANIFEST_", "CARGO_PKG_", "CARGO_CRATE_", "CARGO_BIN_", "CARGO_PRIMARY_PACKAGE"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            || matches!(name.as_str(), "CARGO_TARGET_TMPDIR" | "OUT_DIR" | "CARGO");
        if from_cargo_test {
            cargo.env_remove(&name);
        }
    }
    let mut child = cargo
        .args(&words[1..])
        .current_dir(scratch.path())
        // The default address, 127.0.0.1:8080, may be taken where the tests run.
        .env("LOGYARD_SERVER_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cargo runs");
    let stderr = child.stderr.take().unwrap();
    let build_log = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let Some(addr) = first.trim().strip_prefix("logyard listening on http://").map(str::to_owned) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("`{command}` did not serve; stdout: {first:?}; stderr:\n{}", build_log.join().unwrap());
    };

    let health = common::client().get(format!("http://{addr}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<serde_json::Value>().await.unwrap()["status"], "ok");
    assert!(scratch.path().join("logyard-data").is_dir(), "the default data directory is ./logyard-data");

    // `cargo run` replaces itself with the server: the signal reaches it.
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "{}", build_log.join().unwrap());
}
