"""The shipper configurations of docs/deploy-eks.md against a running logyard.

    test_shippers.py --base-url http://127.0.0.1:PORT [--docs docs/deploy-eks.md] [--chart DIR]
    test_shippers.py --server-bin PATH --render MANIFESTS --workdir DIR [...]

Reads the blocks marked `<!-- check: fluent-bit -->`, `<!-- check: vector -->`,
`<!-- check: fluent-bit-es -->`, `<!-- check: vector-elasticsearch -->` and
`<!-- check: otel-collector -->` from the docs, checks their host, port, URI, headers, format and batch size against the chart and the
ingest API, then POSTs to the endpoint each one names a body shaped exactly like what that
shipper sends (Fluent Bit's `http` output with `format json_lines`: NDJSON,
Content-Type application/x-ndjson, gzip; Vector's `http` sink with the json codec and
newline-delimited framing: the same, with its event layout; Fluent Bit's `es` output and
Vector's `elasticsearch` sink: a `_bulk` body of create actions with basic authentication;
the OpenTelemetry Collector's `otlphttp` exporter: an OTLP/protobuf logs request) and asserts
the answers, and the rows committed to each stream.

With --server-bin it starts logyard itself on 127.0.0.1:0 with the environment and
logyard.toml of the rendered StatefulSet (so the chart's configuration is proven to start the
real binary; storage and WAL in --workdir), and stops it with SIGTERM, which must exit 0.
Only 127.0.0.1 is contacted.
"""

import argparse
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[3]
STREAM_RE = r"[a-z0-9][a-z0-9_-]{0,62}"
URI_RE = re.compile(rf"/api/v1/streams/({STREAM_RE})/events(\?ack=(wal|commit))?")
TIME_FIELDS = ("timestamp", "@timestamp", "time", "ts")  # logyard-core: time::TIME_FIELDS
RELEASE, NAMESPACE = "logyard", "logyard"  # docs/deploy-eks.md installs release logyard in namespace logyard

failures: list[str] = []
passed = 0


def check(cond: bool, what: str) -> None:
    global passed
    if cond:
        passed += 1
    else:
        failures.append(what)
        print(f"FAIL: {what}")


def block(docs: str, name: str) -> str:
    m = re.search(rf"<!-- check: {name} -->\s*\n```[\w-]*\n(.*?)\n```", docs, re.S)
    if not m:
        sys.exit(f"docs: no fenced block after <!-- check: {name} -->")
    return m[1]


def fluent_bit_outputs(text: str) -> list[dict]:
    """[OUTPUT] sections of a classic Fluent Bit config: keys lower-cased, Header repeated."""
    sections, current = [], None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = {"_section": line.strip("[]").upper(), "header": []}
            sections.append(current)
            continue
        key, _, value = line.partition(" ")
        if current is None:
            sys.exit(f"fluent-bit: {line!r} outside a section")
        if key.lower() == "header":
            name, _, hvalue = value.strip().partition(" ")
            current["header"].append((name, hvalue.strip()))
        else:
            current[key.lower()] = value.strip()
    return [s for s in sections if s["_section"] == "OUTPUT"]


def expand(value: str, token: str) -> str:
    return value.replace("${LOGYARD_TOKEN}", token)


def post(url: str, body: bytes, headers: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def post_raw(url: str, body: bytes, headers: dict) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def basic(user: str, password: str) -> str:
    import base64
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def bulk_body(index: str, docs: list[dict]) -> bytes:
    """A _bulk body of create actions, as Fluent Bit's es output and Vector's sink write it."""
    lines = []
    for d in docs:
        lines.append(json.dumps({"create": {"_index": index}}, separators=(",", ":")))
        lines.append(json.dumps(d, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode()


def check_bulk_answer(who: str, status: int, answer: dict, n: int) -> None:
    check(status == 200, f"{who}: POST /_bulk answers 200 ({status} {answer})")
    items = answer.get("items", [])
    check(answer.get("errors") is False and len(items) == n, f"{who}: {n} items, no errors ({answer})")
    check(all(i.get("create", {}).get("status") == 201 for i in items), f"{who}: every item created (201)")


def check_fluent_bit_es(text: str, base: str, token: str, service_port: int) -> tuple[str, int]:
    outputs = [o for o in fluent_bit_outputs(text) if o.get("name", "").lower() == "es"]
    check(len(outputs) == 1, "fluent-bit-es: one [OUTPUT] with Name es")
    o = outputs[0]
    check(o.get("host") == f"{RELEASE}.{NAMESPACE}.svc.cluster.local", "fluent-bit-es: Host is the chart's Service")
    check(o.get("port") == str(service_port), f"fluent-bit-es: Port is the Service port {service_port}")
    index = o.get("index", "")
    check(re.fullmatch(STREAM_RE, index) is not None, f"fluent-bit-es: Index {index!r} is a stream name")
    check(o.get("suppress_type_name", "").lower() == "on", "fluent-bit-es: Suppress_Type_Name On (no _type, as Elasticsearch 8)")
    check(o.get("http_passwd") == "${LOGYARD_TOKEN}", "fluent-bit-es: HTTP_Passwd is the token (basic authentication)")
    compress = o.get("compress", "").lower()
    # out_es: records with @timestamp (Time_Key) in ISO 8601, create actions.
    docs = [{"@timestamp": f"2026-11-25T14:07:{i:02d}.{i:03d}Z", "log": f"GET /cart 200 {i}", "kubernetes": k8s_meta(i)} for i in range(30)]
    body = bulk_body(index, docs)
    headers = {"Content-Type": "application/x-ndjson", "Authorization": basic(o.get("http_user", ""), expand(o.get("http_passwd", ""), token))}
    if compress == "gzip":
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    status, raw = post_raw(base + "/_bulk", body, headers)
    check_bulk_answer("fluent-bit-es", status, json.loads(raw or b"{}"), len(docs))
    return index, len(docs)


def check_vector_es(text: str, base: str, token: str, service_port: int) -> tuple[str, int]:
    config = yaml.safe_load(text)
    sinks = [s for s in config.get("sinks", {}).values() if s.get("type") == "elasticsearch"]
    check(len(sinks) == 1, "vector-elasticsearch: one sink of type elasticsearch")
    s = sinks[0]
    endpoint = urlsplit((s.get("endpoints") or [""])[0])
    check(endpoint.hostname == f"{RELEASE}.{NAMESPACE}.svc.cluster.local" and endpoint.port == service_port, "vector-elasticsearch: the endpoint is the chart's Service")
    check(s.get("api_version") == "v8", "vector-elasticsearch: api_version v8 (no _type)")
    bulk = s.get("bulk", {})
    index = bulk.get("index", "")
    check(re.fullmatch(STREAM_RE, index) is not None, f"vector-elasticsearch: bulk.index {index!r} is a stream name")
    check(bulk.get("action", "index") in ("index", "create"), "vector-elasticsearch: bulk.action index or create")
    auth = s.get("auth", {})
    check(auth.get("strategy") == "basic" and auth.get("password") == "${LOGYARD_TOKEN}", "vector-elasticsearch: basic auth with the token as password")
    # What the sink checks first.
    for path in ("/", "/_cluster/health"):
        req = urllib.request.Request(base + path, headers={"Authorization": basic(auth.get("user", ""), token)})
        with urllib.request.urlopen(req, timeout=30) as resp:
            check(resp.status == 200 and resp.headers.get("X-Elastic-Product") == "Elasticsearch", f"vector-elasticsearch: GET {path} answers as Elasticsearch")
    docs = [{"message": f"GET /checkout 502 {i}ms", "timestamp": f"2026-11-25T14:09:{i:02d}.000417Z", "kubernetes": {"pod_name": f"storefront-{i}"}} for i in range(20)]
    body = bulk_body(index, docs)
    headers = {"Content-Type": "application/x-ndjson", "Authorization": basic(auth.get("user", ""), token)}
    if s.get("compression", "none") == "gzip":
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    status, raw = post_raw(base + "/_bulk", body, headers)
    check_bulk_answer("vector-elasticsearch", status, json.loads(raw or b"{}"), len(docs))
    return index, len(docs)


def pb_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_bytes(tag: int, payload: bytes) -> bytes:
    return pb_varint(tag << 3 | 2) + pb_varint(len(payload)) + payload


def pb_kv(key: str, value: str) -> bytes:
    return pb_bytes(1, key.encode()) + pb_bytes(2, pb_bytes(1, value.encode()))


def otlp_logs_request(service: str, n: int) -> bytes:
    """An ExportLogsServiceRequest in protobuf: one resource, one scope, n records."""
    import struct
    records = b""
    for i in range(n):
        record = (pb_varint(1 << 3 | 1) + struct.pack("<Q", 1_764_079_620_000_000_000 + i)  # time_unix_nano
                  + pb_varint(2 << 3) + pb_varint(9)  # severity_number INFO
                  + pb_bytes(3, b"INFO")
                  + pb_bytes(5, pb_bytes(1, f"order {i} placed".encode()))  # body
                  + pb_bytes(6, pb_kv("k8s.pod.name", f"checkout-{i % 3}")))
        records += pb_bytes(2, record)
    scope_logs = pb_bytes(1, pb_bytes(1, b"filelog")) + records
    resource = pb_bytes(1, pb_kv("service.name", service)) + pb_bytes(1, pb_kv("k8s.namespace.name", "shop"))
    return pb_bytes(1, pb_bytes(1, resource) + pb_bytes(2, scope_logs))


def check_otel_collector(text: str, base: str, token: str, service_port: int) -> tuple[str, int]:
    config = yaml.safe_load(text)
    exporters = {k: v for k, v in config.get("exporters", {}).items() if k.split("/")[0] == "otlphttp"}
    check(len(exporters) == 1, "otel-collector: one otlphttp exporter")
    name, e = next(iter(exporters.items()))
    endpoint = urlsplit(e.get("logs_endpoint", ""))
    check(endpoint.hostname == f"{RELEASE}.{NAMESPACE}.svc.cluster.local" and endpoint.port == service_port, "otel-collector: logs_endpoint is the chart's Service")
    check(endpoint.path == "/v1/logs", "otel-collector: logs_endpoint path /v1/logs")
    auth = e.get("headers", {}).get("Authorization", "")
    check(auth == "Bearer ${env:LOGYARD_TOKEN}", "otel-collector: Authorization Bearer ${env:LOGYARD_TOKEN}")
    check(e.get("encoding", "proto") == "proto", "otel-collector: protobuf encoding (the exporter's default)")
    pipelines = config.get("service", {}).get("pipelines", {})
    check(any(name in p.get("exporters", []) for k, p in pipelines.items() if k.split("/")[0] == "logs"), "otel-collector: a logs pipeline exports to it")
    body = otlp_logs_request("checkout", 12)
    headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {token}"}
    if e.get("compression", "gzip") == "gzip":
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    status, raw = post_raw(base + endpoint.path, body, headers)
    check(status == 200, f"otel-collector: POST /v1/logs answers 200 ({status} {raw[:200]!r})")
    check(raw == b"", f"otel-collector: an ExportLogsServiceResponse without partial_success ({raw!r})")
    return "checkout", 12


def count_rows(base: str, stream: str) -> int:
    status, _ = post(base + "/api/v1/flush", b"", {})
    check(status == 200, "POST /api/v1/flush answers 200")
    status, answer = post(
        base + "/api/v1/query",
        json.dumps({"sql": f'SELECT count(*) AS n FROM "{stream}"'}).encode(),
        {"Content-Type": "application/json"},
    )
    check(status == 200, f"counting rows of {stream}: {answer}")
    return answer["rows"][0]["n"] if status == 200 else -1


def k8s_meta(i: int) -> dict:
    return {
        "pod_name": f"storefront-7d9c6b5f4-{i:05d}",
        "namespace_name": "shop",
        "pod_id": "5b0c1f8e-6f39-4c1e-9a54-0c3b8f0e9d1a",
        "labels": {"app.kubernetes.io/name": "storefront", "pod-template-hash": "7d9c6b5f4"},
        "host": "ip-10-0-12-34.eu-west-1.compute.internal",
        "container_name": "storefront",
        "docker_id": "4f1c0e6a9b",
        "container_image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/storefront:2.3.1",
    }


def check_fluent_bit(text: str, base: str, token: str, service_port: int) -> tuple[str, int]:
    outputs = [o for o in fluent_bit_outputs(text) if o.get("name", "").lower() == "http"]
    check(len(outputs) == 1, "fluent-bit: one [OUTPUT] with Name http")
    o = outputs[0]
    check(o.get("host") == f"{RELEASE}.{NAMESPACE}.svc.cluster.local", f"fluent-bit: Host is the chart's Service ({o.get('host')})")
    check(o.get("port") == str(service_port), f"fluent-bit: Port is the Service port {service_port}")
    m = URI_RE.fullmatch(o.get("uri", ""))
    check(m is not None, f"fluent-bit: URI {o.get('uri')!r} is the NDJSON ingest endpoint")
    check(o.get("format") == "json_lines", "fluent-bit: Format json_lines (NDJSON)")
    date_key = o.get("json_date_key")
    check(date_key in TIME_FIELDS, f"fluent-bit: Json_Date_Key {date_key!r} is a field logyard reads the event time from")
    check(o.get("json_date_format") == "iso8601", "fluent-bit: Json_Date_Format iso8601 (RFC 3339)")
    compress = o.get("compress", "").lower()
    check(compress in ("", "gzip"), "fluent-bit: Compress gzip or none")
    headers = dict(o["header"])
    check(headers.get("Authorization") == "Bearer ${LOGYARD_TOKEN}", "fluent-bit: Authorization: Bearer ${LOGYARD_TOKEN}")
    check("Content-Type" not in headers, "fluent-bit: no Content-Type header of its own (the plugin sets x-ndjson for json_lines)")
    check(o.get("tls", "off").lower() in ("off", "false"), "fluent-bit: plain HTTP inside the cluster (port 8080)")

    # The body out_http sends for json_lines: one JSON object per record and line, the time
    # under Json_Date_Key as ISO 8601 with microseconds; the record of tail + the CRI parser +
    # the kubernetes filter.
    records = []
    for i in range(25):
        records.append({
            date_key: f"2026-11-25T14:03:{i:02d}.{i * 1111:06d}Z",
            "time": f"2026-11-25T14:03:{i:02d}.{i * 1111:06d}123Z",
            "stream": "stdout" if i % 3 else "stderr",
            "logtag": "F",
            "log": f'{{"level":"info","route":"/cart","status":200,"latency_ms":{i}.5}} request {i}',
            "kubernetes": k8s_meta(i),
        })
    body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
    send_headers = {"Content-Type": "application/x-ndjson", "User-Agent": "Fluent-Bit"}
    if compress == "gzip":
        body = gzip.compress(body)
        send_headers["Content-Encoding"] = "gzip"
    for name, value in o["header"]:
        send_headers[name] = expand(value, token)
    status, answer = post(base + o.get("uri", ""), body, send_headers)
    check(status == 200, f"fluent-bit: POST {o.get('uri')} answers 200 ({status} {answer})")
    check(answer.get("accepted") == len(records) and answer.get("rejected") == 0, f"fluent-bit: all {len(records)} records accepted ({answer})")
    return (m[1] if m else ""), len(records)


def check_vector(text: str, base: str, token: str, service_port: int, max_body: int) -> tuple[str, int]:
    config = yaml.safe_load(text)
    sinks = [s for s in config.get("sinks", {}).values() if s.get("type") == "http"]
    check(len(sinks) == 1, "vector: one sink of type http")
    s = sinks[0]
    check(bool(set(s.get("inputs", [])) & set(config.get("sources", {}))), "vector: the sink reads a source defined in the same file")
    check(any(src.get("type") == "kubernetes_logs" for src in config.get("sources", {}).values()), "vector: a kubernetes_logs source")
    uri = urlsplit(s.get("uri", ""))
    check(uri.scheme == "http" and uri.hostname == f"{RELEASE}.{NAMESPACE}.svc.cluster.local", f"vector: uri host is the chart's Service ({uri.hostname})")
    check(uri.port == service_port, f"vector: uri port is the Service port {service_port}")
    path = uri.path + (f"?{uri.query}" if uri.query else "")
    m = URI_RE.fullmatch(path)
    check(m is not None, f"vector: uri path {path!r} is the NDJSON ingest endpoint")
    check(s.get("method", "post").lower() == "post", "vector: method post")
    check(s.get("encoding", {}).get("codec") == "json", "vector: encoding.codec json")
    check(s.get("framing", {}).get("method") == "newline_delimited", "vector: framing newline_delimited (NDJSON; Vector then sends application/x-ndjson)")
    compression = s.get("compression", "none")
    check(compression in ("none", "gzip"), "vector: compression gzip or none")
    auth = s.get("auth", {})
    check(auth.get("strategy") == "bearer" and auth.get("token") == "${LOGYARD_TOKEN}", "vector: auth bearer ${LOGYARD_TOKEN}")
    max_bytes = s.get("batch", {}).get("max_bytes", 10_000_000)
    check(max_bytes <= max_body, f"vector: batch.max_bytes {max_bytes} fits logyard's body limit {max_body} even uncompressed")
    headers = s.get("request", {}).get("headers", {})
    check("Content-Type" not in headers, "vector: no Content-Type of its own (the codec and framing choose it)")

    # Vector's kubernetes_logs event as the json codec writes it, one per line.
    events = []
    for i in range(40):
        meta = k8s_meta(i)
        events.append({
            "file": f"/var/log/pods/shop_{meta['pod_name']}_{meta['pod_id']}/storefront/0.log",
            "kubernetes": {
                "container_id": "containerd://4f1c0e6a9b",
                "container_image": meta["container_image"],
                "container_name": "storefront",
                "namespace_labels": {"kubernetes.io/metadata.name": "shop"},
                "node_labels": {"eks.amazonaws.com/capacityType": "SPOT", "topology.kubernetes.io/zone": "eu-west-1a"},
                "pod_ip": "10.0.12.77",
                "pod_labels": meta["labels"],
                "pod_name": meta["pod_name"],
                "pod_namespace": "shop",
                "pod_node_name": meta["host"],
                "pod_owner": "ReplicaSet/storefront-7d9c6b5f4",
                "pod_uid": meta["pod_id"],
            },
            "message": f"GET /checkout 502 {i}ms",
            "source_type": "kubernetes_logs",
            "stream": "stdout",
            "timestamp": f"2026-11-25T14:05:{i:02d}.{i:06d}417Z",
        })
    body = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events).encode()
    send_headers = {"Content-Type": "application/x-ndjson", "Authorization": f"Bearer {token}", "User-Agent": "Vector/0.51.0"}
    if compression == "gzip":
        body = gzip.compress(body)
        send_headers["Content-Encoding"] = "gzip"
    status, answer = post(base + path, body, send_headers)
    check(status == 200, f"vector: POST {path} answers 200 ({status} {answer})")
    check(answer.get("accepted") == len(events) and answer.get("rejected") == 0, f"vector: all {len(events)} events accepted ({answer})")
    return (m[1] if m else ""), len(events)


class Server:
    """logyard serve on 127.0.0.1:0 with the rendered StatefulSet's env and logyard.toml."""

    def __init__(self, binary: str, render: str, workdir: Path):
        docs = [d for d in yaml.safe_load_all(Path(render).read_text()) if d]
        sts = next(d for d in docs if d["kind"] == "StatefulSet")
        container = sts["spec"]["template"]["spec"]["containers"][0]
        cm = next(d for d in docs if d["kind"] == "ConfigMap")
        secret = next((d for d in docs if d["kind"] == "Secret"), None)
        workdir.mkdir(parents=True, exist_ok=True)
        # The files the pod would see, under workdir instead of /etc/logyard.
        mounts = {"/etc/logyard/config": cm.get("data", {})}
        if secret:
            mounts["/etc/logyard/secret"] = secret.get("stringData", {})
        for path, files in mounts.items():
            d = workdir / path.lstrip("/")
            d.mkdir(parents=True, exist_ok=True)
            for name, content in files.items():
                (d / name).write_text(content)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LOGYARD_", "AWS_"))}
        for e in container.get("env", []):
            # The chart's tokens file is the operator's (a placeholder in the production values):
            # the server here runs on loopback without tokens, which logyard allows.
            if e["name"] == "LOGYARD_TOKENS_FILE":
                continue
            if "value" in e:
                value = e["value"]
                if value.startswith("/etc/logyard/"):
                    value = str(workdir / value.lstrip("/"))
                # The image's RDS CA bundle is not on this machine: any PEM bundle will do,
                # since no query here reaches the orders database.
                if value == "/usr/share/logyard/rds-global-bundle.pem":
                    value = "/etc/ssl/certs/ca-certificates.crt"
                env[e["name"]] = value
        self.env_names = sorted(k for k in env if k.startswith("LOGYARD_"))
        args = [binary, *container["args"], "--listen", "127.0.0.1:0",
                "--storage", str(workdir / "data"), "--wal-dir", str(workdir / "wal")]
        self.stderr = open(workdir / "stderr.log", "wb")
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=self.stderr, cwd=workdir)
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(60)
        first = line[0].decode() if line else ""
        m = re.fullmatch(r"logyard listening on (http://127\.0\.0\.1:\d+)\s*", first)
        if not m:
            self.stop()
            sys.exit(f"logyard did not start with the chart's configuration: {first!r}\n{self.log()}")
        self.url = m[1]

    def log(self) -> str:
        self.stderr.flush()
        return Path(self.stderr.name).read_text(errors="replace")[-4000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url")
    ap.add_argument("--server-bin")
    ap.add_argument("--render", help="helm template output whose StatefulSet env and ConfigMap start the server")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--docs", default=str(ROOT / "docs/deploy-eks.md"))
    ap.add_argument("--chart", default=str(ROOT / "deploy/helm/logyard"))
    ap.add_argument("--token", default=os.environ.get("LOGYARD_TEST_TOKEN", "test-token"))
    args = ap.parse_args()

    docs = Path(args.docs).read_text()
    values = yaml.safe_load((Path(args.chart) / "values.yaml").read_text())
    service_port = values["service"]["port"]
    example = (ROOT / "logyard.example.toml").read_text()
    max_body = int(re.search(r"^max_body_bytes\s*=\s*(\d+)", example, re.M)[1])

    server = None
    if args.server_bin:
        if not (args.render and args.workdir):
            sys.exit("--server-bin needs --render and --workdir")
        server = Server(args.server_bin, args.render, Path(args.workdir))
        base = server.url
        print(f"logyard started at {base} with the chart's {', '.join(server.env_names)} and logyard.toml")
    elif args.base_url:
        base = args.base_url.rstrip("/")
    else:
        sys.exit("give --base-url or --server-bin")
    if urlsplit(base).hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("only a server on loopback is tested")

    try:
        with urllib.request.urlopen(base + "/readyz", timeout=30) as resp:
            check(resp.status == 200, "the server is ready")
        totals: dict[str, int] = {}
        stream, n = check_fluent_bit(block(docs, "fluent-bit"), base, args.token, service_port)
        totals[stream] = totals.get(stream, 0) + n
        stream, n = check_vector(block(docs, "vector"), base, args.token, service_port, max_body)
        totals[stream] = totals.get(stream, 0) + n
        for check_block, name in ((check_fluent_bit_es, "fluent-bit-es"), (check_vector_es, "vector-elasticsearch"), (check_otel_collector, "otel-collector")):
            stream, n = check_block(block(docs, name), base, args.token, service_port)
            totals[stream] = totals.get(stream, 0) + n
        for stream, n in totals.items():
            if stream:
                rows = count_rows(base, stream)
                check(rows == n, f"stream {stream}: {n} rows committed (found {rows})")
    finally:
        if server:
            code = server.stop()
            check(code == 0, f"logyard exits 0 after SIGTERM (exit {code})")
            if failures:
                print(server.log())
    print(f"shippers: {passed} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
