//! AWS credentials the EKS way (IRSA web identity through STS, EKS Pod Identity through the
//! container credentials endpoint, refresh before expiry), and `logyard doctor`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::Value;

/// Environment with no credentials anywhere but what the test adds.
fn bare_env() -> Vec<(String, String)> {
    vec![
        ("AWS_REGION".into(), "us-east-1".into()),
        ("AWS_CONFIG_FILE".into(), "/nonexistent".into()),
        ("AWS_SHARED_CREDENTIALS_FILE".into(), "/nonexistent".into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ("LOGYARD_LOG_LEVEL".into(), "error".into()),
    ]
}

/// The environment of a pod whose role comes from IRSA (a web identity token file, as the
/// kubelet projects it), with STS at `sts` and S3 at `s3`: role `logyard` of 123456789012,
/// session `session`.
fn irsa_env(dir: &std::path::Path, session: &str, sts: &str, s3: &str) -> Vec<(String, String)> {
    let token_file = dir.join("token");
    std::fs::write(
        &token_file,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6bG9neWFyZDpsb2d5YXJkIn0.c2ln",
    )
    .unwrap();
    let mut env = bare_env();
    env.extend([
        ("AWS_ROLE_ARN".into(), "arn:aws:iam::123456789012:role/logyard".into()),
        ("AWS_WEB_IDENTITY_TOKEN_FILE".into(), token_file.display().to_string()),
        ("AWS_ROLE_SESSION_NAME".into(), session.into()),
        ("AWS_ENDPOINT_URL_STS".into(), sts.into()),
        ("AWS_ENDPOINT_URL".into(), s3.into()),
    ]);
    env
}

fn doctor(args: &[&str], env: &[(String, String)]) -> (i32, Value) {
    let mut all = vec!["doctor", "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = cli_clean(&all, env);
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (code, v)
}

/// Like `cli`, without the AWS variables of the test's own environment.
fn cli_clean(args: &[&str], env: &[(String, String)]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(args).stdin(std::process::Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

#[test]
fn doctor_against_s3s_fs_is_all_ok() {
    let s3 = S3::start();
    let moto = Moto::start();
    let bucket = s3.bucket("doctor");
    let dir = tempfile::tempdir().unwrap();
    let mut env = s3.env();
    env.push(("AWS_ENDPOINT_URL_STS".into(), moto.endpoint.clone()));
    env.push(("LOGYARD_LOG_LEVEL".into(), "error".into()));
    let wal = dir.path().join("wal");
    let (code, report) = doctor(&["--storage", &format!("s3://{bucket}/p"), "--wal-dir", wal.to_str().unwrap()], &env);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true);
    for name in ["config", "region", "credentials", "identity", "storage", "wal"] {
        assert_eq!(check(&report, name)["status"], "ok", "{name}: {report}");
    }
    assert!(check(&report, "credentials")["detail"].as_str().unwrap().contains("environment variables"));
    assert!(check(&report, "identity")["detail"].as_str().unwrap().contains("arn:aws"), "{report}");
    assert!(check(&report, "storage")["detail"].as_str().unwrap().contains("list, put, get and delete"));

    // The text form, for people.
    let (code, out, _) =
        cli_clean(&["doctor", "--storage", &format!("s3://{bucket}/p"), "--wal-dir", wal.to_str().unwrap()], &env);
    assert_eq!(code, 0);
    assert!(out.lines().all(|l| l.starts_with("ok ") || l.starts_with("skip ")), "{out}");
}

#[test]
fn doctor_names_a_wrong_secret_and_missing_credentials() {
    let s3 = S3::start();
    let moto = Moto::start();
    let bucket = s3.bucket("doctor");
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    let storage = format!("s3://{bucket}/p");
    let args = ["--storage", storage.as_str(), "--wal-dir", wal.to_str().unwrap()];

    let mut env = s3.env();
    env.push(("AWS_ENDPOINT_URL_STS".into(), moto.endpoint.clone()));
    for (k, v) in env.iter_mut() {
        if k == "AWS_SECRET_ACCESS_KEY" {
            *v = "wrong-secret".into();
        }
    }
    let (code, report) = doctor(&args, &env);
    assert_ne!(code, 0);
    let storage_check = check(&report, "storage");
    assert_eq!(storage_check["status"], "fail", "{report}");
    assert!(storage_check["fix"].as_str().unwrap().contains("S3 refused the request"), "{report}");

    let mut env = bare_env();
    env.push(("AWS_ENDPOINT_URL".into(), s3.endpoint.clone()));
    let (code, report) = doctor(&args, &env);
    assert_ne!(code, 0);
    let creds = check(&report, "credentials");
    assert_eq!(creds["status"], "fail", "{report}");
    let fix = creds["fix"].as_str().unwrap();
    assert!(
        fix.contains("Pod Identity") && fix.contains("eks.amazonaws.com/role-arn") && fix.contains("hop limit"),
        "{fix}"
    );
}

#[tokio::test]
async fn irsa_web_identity_credentials_come_from_sts() {
    // Storage on moto's S3 (it accepts any signature: the keys come from its STS).
    let moto = Moto::start();
    let bucket = moto.bucket("irsa");
    let dir = tempfile::tempdir().unwrap();
    let env = irsa_env(dir.path(), "logyard-test", &moto.endpoint, &moto.proxied);
    let wal = dir.path().join("wal");
    let storage = format!("s3://{bucket}/p");
    let (code, report) = doctor(&["--storage", &storage, "--wal-dir", wal.to_str().unwrap()], &env);
    assert_eq!(code, 0, "{report}");
    assert!(
        check(&report, "credentials")["detail"].as_str().unwrap().contains("web identity token (IRSA)"),
        "{report}"
    );
    assert!(
        check(&report, "identity")["detail"].as_str().unwrap().contains("assumed-role/logyard/logyard-test"),
        "{report}"
    );

    // The server signs its S3 requests with the temporary credentials STS gave it.
    let spec = ServerSpec { listen: None, storage, wal_dir: dir.path().join("srv-wal"), env: env.clone() };
    let server = spec.start();
    assert_eq!(ingest(&server, "irsa", events("i", 5), "?ack=commit").await.0, 200);
    let signers = moto.faults.signers();
    assert!(!signers.is_empty());
    assert!(signers.iter().all(|s| s.access_key_id.starts_with("ASIA") && s.session_token.is_some()), "{signers:?}");
}

/// A loopback stand-in for the EKS Pod Identity agent: checks the Authorization header and
/// hands out s3s-fs's keys with a new session token each time, expiring soon.
struct PodIdentityAgent {
    url: String,
    calls: Arc<Mutex<Vec<String>>>,
}

fn pod_identity_agent(
    access_key: String,
    secret_key: String,
    expected_auth: String,
    lifetime: Duration,
) -> PodIdentityAgent {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/credentials", listener.local_addr().unwrap());
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            use std::io::{BufRead, BufReader, Write};
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut auth = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.strip_prefix("authorization: ").or_else(|| line.strip_prefix("Authorization: ")) {
                    auth = v.trim().to_owned();
                }
            }
            let n = {
                let mut calls = seen.lock().unwrap();
                calls.push(auth.clone());
                calls.len()
            };
            let (status, body) = if auth == expected_auth {
                let expiry = chrono::DateTime::<chrono::Utc>::from(SystemTime::now() + lifetime);
                let body = serde_json::json!({
                    "AccessKeyId": access_key,
                    "SecretAccessKey": secret_key,
                    "Token": format!("pod-identity-session-{n}"),
                    "AccountId": "123456789012",
                    "Expiration": expiry.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                });
                ("200 OK", body.to_string())
            } else {
                ("401 Unauthorized", "{\"message\":\"bad token\"}".to_owned())
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    PodIdentityAgent { url, calls }
}

#[tokio::test]
async fn pod_identity_credentials_are_refreshed_before_they_expire() {
    let s3 = S3::start();
    let bucket = s3.bucket("podid");
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("eks-pod-identity-token");
    std::fs::write(&token_file, "projected-service-account-token-123").unwrap();
    // Credentials that expire 5 minutes and 4 seconds after they are handed out: with the
    // refresh margin of 5 minutes, a new set is fetched after about 4 seconds.
    let agent = pod_identity_agent(
        s3.access_key.clone(),
        s3.secret_key.clone(),
        "projected-service-account-token-123".into(),
        Duration::from_secs(304),
    );
    let mut env = bare_env();
    env.extend([
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI".into(), agent.url.clone()),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(), token_file.display().to_string()),
        ("AWS_ENDPOINT_URL".into(), s3.endpoint.clone()),
    ]);
    let spec = ServerSpec { listen: None, storage: format!("s3://{bucket}/p"), wal_dir: dir.path().join("wal"), env };
    let server = spec.start();
    assert_eq!(ingest(&server, "pod", events("a", 5), "?ack=commit").await.0, 200);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(ingest(&server, "pod", events("b", 5), "?ack=commit").await.0, 200, "works past the first expiry");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(ingest(&server, "pod", events("c", 5), "?ack=commit").await.0, 200);
    assert_eq!(count(&server, "SELECT count(*) FROM pod").await, 15);

    let calls = agent.calls.lock().unwrap().clone();
    assert!(calls.len() >= 2, "credentials were fetched again before they expired: {calls:?}");
    assert!(
        calls.iter().all(|a| a == "projected-service-account-token-123"),
        "the token file's content is the Authorization: {calls:?}"
    );
    let tokens: std::collections::HashSet<_> =
        s3.faults.signers().into_iter().filter_map(|s| s.session_token).collect();
    assert!(tokens.len() >= 2, "S3 saw requests signed with the refreshed credentials: {tokens:?}");
}

/// A bucket in another account: the storage is reached as a role of that account, assumed
/// with the pod's own role's credentials (IRSA web identity; role chaining) and the external
/// id its trust policy asks for, and assumed again before its credentials expire. Two roles:
/// the pod's in account 123456789012, the bucket's in 222222222222.
#[tokio::test]
async fn a_bucket_in_another_account_is_reached_through_a_role_assumed_with_the_pods_credentials() {
    let moto = Moto::start();
    let bucket = moto.bucket("other-account");
    let port: u16 = moto.endpoint.rsplit(':').next().unwrap().parse().unwrap();
    // STS behind a proxy of its own: it records the calls and can refuse AssumeRole.
    let (sts, sts_faults) = behind_proxy("moto (STS)", port, Duration::from_secs(10));
    let dir = tempfile::tempdir().unwrap();
    let role = "arn:aws:iam::222222222222:role/logyard-bucket";
    let mut env = irsa_env(dir.path(), "pod", &format!("http://{sts}"), &moto.proxied);
    env.extend([
        ("LOGYARD_STORAGE_S3_ROLE_ARN".into(), role.into()),
        ("LOGYARD_STORAGE_S3_ROLE_EXTERNAL_ID".into(), "shop-logs".into()),
        // Credentials that last 5 minutes and 4 seconds: with the refresh margin of 5
        // minutes, the role is assumed again after about 4 seconds.
        ("LOGYARD_STORAGE_S3_ROLE_SESSION".into(), "304s".into()),
    ]);
    let storage = format!("s3://{bucket}/p");
    let wal = dir.path().join("doctor-wal");
    let args = ["--storage", storage.as_str(), "--wal-dir", wal.to_str().unwrap()];
    let (code, report) = doctor(&args, &env);
    assert_eq!(code, 0, "{report}");
    let detail = check(&report, "storage role")["detail"].as_str().unwrap().to_owned();
    assert!(detail.starts_with("arn:aws:sts::123456789012:assumed-role/logyard/pod assumed"), "{detail}");
    assert!(detail.contains("assumed arn:aws:iam::222222222222:role/logyard-bucket"), "{detail}");
    assert!(detail.contains("assumed-role/logyard-bucket/logyard-doctor"), "{detail}");
    assert_eq!(check(&report, "storage")["status"], "ok", "{report}");

    let spec = ServerSpec { listen: None, storage: storage.clone(), wal_dir: dir.path().join("wal"), env: env.clone() };
    let server = spec.start();
    assert_eq!(ingest(&server, "xacct", events("a", 5), "?ack=commit").await.0, 200);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(ingest(&server, "xacct", events("b", 5), "?ack=commit").await.0, 200, "works past the first expiry");
    assert_eq!(count(&server, "SELECT count(*) FROM xacct").await, 10);

    // STS was asked for the bucket's role with the pod role's temporary credentials (those of
    // the web identity), for that role, with the external id; every S3 request is signed with
    // the bucket role's credentials, never the pod role's; the bucket role was assumed again
    // before its first credentials expired.
    let pod_keys: std::collections::HashSet<String> =
        sts_faults.signers().into_iter().map(|s| s.access_key_id).collect();
    assert!(!pod_keys.is_empty() && pod_keys.iter().all(|k| k.starts_with("ASIA")), "{pod_keys:?}");
    let signers = moto.faults.signers();
    assert!(!signers.is_empty());
    assert!(signers.iter().all(|s| !pod_keys.contains(&s.access_key_id) && s.session_token.is_some()), "{signers:?}");
    let sessions: std::collections::HashSet<_> = signers.iter().filter_map(|s| s.session_token.clone()).collect();
    assert!(sessions.len() >= 2, "S3 saw the refreshed credentials: {} session(s)", sessions.len());
    let forms = sts_faults.forms();
    assert!(
        forms.iter().any(|f| f.contains("Action=AssumeRoleWithWebIdentity")),
        "the pod's role came from its web identity"
    );
    let assumed: Vec<String> = forms.into_iter().filter(|f| f.contains("Action=AssumeRole&")).collect();
    assert!(assumed.len() >= 3, "doctor once, the server at least twice: {assumed:?}");
    for form in &assumed {
        assert!(form.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A222222222222%3Arole%2Flogyard-bucket"), "{form}");
        assert!(form.contains("ExternalId=shop-logs"), "{form}");
    }

    // Refused: doctor names the policy STS says refused, or both when it does not say.
    sts_faults.set(proxy::Fault::DenyAssumeRoleByPolicy);
    let (code, report) = doctor(&args, &env);
    assert_ne!(code, 0);
    let refused = check(&report, "storage role");
    assert_eq!(refused["status"], "fail", "{report}");
    let fix = refused["fix"].as_str().unwrap();
    assert!(
        fix.starts_with("refused by the pod's own policy")
            && fix.contains("sts:AssumeRole on arn:aws:iam::222222222222:role/logyard-bucket"),
        "{fix}"
    );
    sts_faults.set(proxy::Fault::DenyAssumeRole);
    let (_, report) = doctor(&args, &env);
    let fix = check(&report, "storage role")["fix"].as_str().unwrap().to_owned();
    assert!(fix.contains("does not say which") && fix.contains("sts:ExternalId = \"shop-logs\""), "{fix}");
}
