//! Kinesis Data Streams on loopback: kinesalite (from npm, started from node on 127.0.0.1),
//! a fault proxy in front of it, and boto3 as the producer.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{aws_env, behind_proxy, free_port, node_modules, program, proxy};

pub struct Kinesalite {
    child: Child,
    /// The server itself (for the producer).
    pub endpoint: String,
    /// The server through the fault proxy (for logyard).
    pub proxied: String,
    pub faults: proxy::Faults,
}

impl Kinesalite {
    pub fn start() -> Kinesalite {
        let modules = node_modules();
        assert!(
            PathBuf::from(&modules).join("kinesalite").is_dir(),
            "no kinesalite in {modules}; scripts/test.sh installs it"
        );
        let node = program("LOGYARD_NODE", "node", "scripts/test.sh installs Debian's nodejs");
        let script = super::crate_dir().join("../../scripts/tests/node/kinesalite.js");
        let port = free_port();
        let child = Command::new(node)
            .arg(script)
            .arg(port.to_string())
            .env("NODE_PATH", &modules)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning kinesalite");
        let (proxy, faults) = behind_proxy("kinesalite", port, Duration::from_secs(20));
        Kinesalite { child, endpoint: format!("http://127.0.0.1:{port}"), proxied: format!("http://{proxy}"), faults }
    }

    /// Runs one producer operation with boto3 (see [`PRODUCER`]) and returns its JSON answer.
    pub fn call(&self, op: Value) -> Value {
        let python = program("LOGYARD_TEST_PYTHON", "python3", "scripts/test.sh makes a venv with boto3");
        let mut child = Command::new(python)
            .args(["-c", PRODUCER, &self.endpoint])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(op.to_string().as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let op = op.get("op").cloned().unwrap_or_default();
        assert!(out.status.success(), "producer {op}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// What a logyard process needs to reach this Kinesis (through the proxy).
    pub fn env(&self) -> Vec<(String, String)> {
        aws_env("AWS_ENDPOINT_URL_KINESIS", &self.proxied, "kinesis-test", "kinesis-test-secret")
    }
}

impl Drop for Kinesalite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// boto3 as a Kinesis producer: `python -c PRODUCER ENDPOINT < OP_JSON`.
/// - `{"op": "create", "stream", "shards"}` creates a stream and waits until it is active;
/// - `{"op": "put", "stream", "records": [{"data_b64", "key"}]}` puts records with
///   PutRecords (500 at a time, retrying the ones refused) and answers their shards;
/// - `{"op": "split", "stream", "shard"}` splits a shard in the middle of its hash range;
/// - `{"op": "shards", "stream"}` lists the shards.
const PRODUCER: &str = r#"
import base64, json, sys, time
import boto3
endpoint, op = sys.argv[1], json.load(sys.stdin)
k = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1",
                 aws_access_key_id="producer", aws_secret_access_key="producer-secret")
def wait_active(name):
    for _ in range(200):
        if k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.05)
    raise SystemExit("stream %s not active" % name)
def shards(name):
    out, token = [], None
    while True:
        r = k.list_shards(NextToken=token) if token else k.list_shards(StreamName=name)
        out += r["Shards"]
        token = r.get("NextToken")
        if not token:
            return out
if op["op"] == "create":
    k.create_stream(StreamName=op["stream"], ShardCount=op["shards"])
    wait_active(op["stream"])
    print(json.dumps({"shards": [s["ShardId"] for s in shards(op["stream"])]}))
elif op["op"] == "put":
    todo = [{"Data": base64.b64decode(r["data_b64"]), "PartitionKey": r["key"]} for r in op["records"]]
    placed = {}
    while todo:
        chunk, todo = todo[:500], todo[500:]
        r = k.put_records(StreamName=op["stream"], Records=chunk)
        for rec, res in zip(chunk, r["Records"]):
            if "ErrorCode" in res:
                todo.append(rec)
            else:
                placed[res["ShardId"]] = placed.get(res["ShardId"], 0) + 1
    print(json.dumps({"placed": placed}))
elif op["op"] == "split":
    s = [s for s in shards(op["stream"]) if s["ShardId"] == op["shard"]][0]
    lo, hi = int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"])
    k.split_shard(StreamName=op["stream"], ShardToSplit=op["shard"], NewStartingHashKey=str((lo + hi) // 2))
    wait_active(op["stream"])
    print(json.dumps({"shards": shards(op["stream"])}))
elif op["op"] == "shards":
    print(json.dumps({"shards": shards(op["stream"])}))
else:
    raise SystemExit("unknown op %r" % op)
"#;
