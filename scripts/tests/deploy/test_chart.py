"""What the rendered Helm chart must say, beyond schema validity.

Usage: test_chart.py DEFAULT_RENDER PRODUCTION_RENDER PGWIRE_RENDER (outputs of `helm
template`, release "logyard" in namespace "logyard"; the production one with
ci/production-values.yaml, the pgwire one with ci/pgwire-values.yaml on top).

Checks Pod Security Standard "restricted" on every pod, the shutdown arithmetic, probes, the
WAL volume, the ALB Ingress annotations and access-log location, the jobs' commands, the
NetworkPolicy, the HPA and PDB, and that the ConfigMap's logyard.toml uses only keys that
logyard.example.toml documents.
"""

import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
failures: list[str] = []
passed = 0


def check(cond: bool, what: str) -> None:
    global passed
    if cond:
        passed += 1
    else:
        failures.append(what)


def load(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str) -> dict:
    found = by_kind(docs, kind)
    check(len(found) == 1, f"exactly one {kind} (found {len(found)})")
    return found[0] if found else {}


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    out = []
    for d in docs:
        name = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] in ("StatefulSet", "Deployment", "Job"):
            out.append((name, d["spec"]["template"]["spec"]))
        elif d["kind"] == "CronJob":
            out.append((name, d["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    return out


def env_of(container: dict) -> dict:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def seconds(text: str) -> int:
    m = re.fullmatch(r"(\d+)s", text or "")
    return int(m[1]) if m else -1


def example_keys() -> set[tuple[str, str]]:
    """(section, key) pairs of logyard.example.toml, commented-out keys included."""
    keys, section = set(), None
    for line in (ROOT / "logyard.example.toml").read_text().splitlines():
        if m := re.fullmatch(r"\s*\[(\w+)\]\s*", line):
            section = m[1]
        elif m := re.fullmatch(r"\s*#?\s*\[\[(\w+)\.(\w+)\]\]\s*", line):
            keys.add((m[1], m[2]))
        elif (m := re.match(r"\s*#?\s*([a-z_]+)\s*=", line)) and section:
            keys.add((section, m[1]))
    return keys


def common(docs: list[dict], label: str) -> None:
    for d in docs:
        # Grafana's data source lives where Grafana's sidecar looks for it.
        if d["kind"] not in ("StorageClass",) and not d["metadata"]["name"].endswith("-grafana-datasource"):
            check(d["metadata"].get("namespace") == "logyard", f"{label}: {d['kind']}/{d['metadata']['name']} in namespace logyard")
    for name, spec in pod_specs(docs):
        where = f"{label}: {name}"
        psc = spec.get("securityContext", {})
        check(psc.get("runAsNonRoot") is True, f"{where}: pod runAsNonRoot")
        check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where}: seccomp RuntimeDefault")
        check(spec.get("automountServiceAccountToken") is False, f"{where}: no API token mounted")
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            check(not spec.get(key), f"{where}: no {key}")
        check(all("hostPath" not in v for v in spec.get("volumes", [])), f"{where}: no hostPath volume")
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        check("emptyDir" in vols.get("tmp", {}), f"{where}: /tmp is an emptyDir")
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c.get("securityContext", {})
            cw = f"{where}/{c['name']}"
            check(sc.get("allowPrivilegeEscalation") is False, f"{cw}: allowPrivilegeEscalation false")
            check(sc.get("readOnlyRootFilesystem") is True, f"{cw}: read-only root filesystem")
            check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{cw}: drops ALL capabilities")
            check(not sc.get("capabilities", {}).get("add"), f"{cw}: adds no capability")
            check(not sc.get("privileged"), f"{cw}: not privileged")
            check(isinstance(sc.get("runAsUser", psc.get("runAsUser")), int) and sc.get("runAsUser", psc.get("runAsUser")) > 0, f"{cw}: numeric non-root user")
            res = c.get("resources", {})
            check({"cpu", "memory"} <= set(res.get("requests", {})) and "memory" in res.get("limits", {}), f"{cw}: requests and memory limit")
            env = env_of(c)
            check(env.get("LOGYARD_STORAGE_WAL_DIR") == "/var/lib/logyard/wal", f"{cw}: WAL under /var/lib/logyard")
            check(env.get("LOGYARD_CONFIG") == "/etc/logyard/config/logyard.toml", f"{cw}: LOGYARD_CONFIG")
            mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
            check("/var/lib/logyard" in mounts and "/tmp" in mounts, f"{cw}: writable mounts for the WAL and /tmp")
            check(mounts.get("/etc/logyard/config", {}).get("readOnly") is True, f"{cw}: config mounted read-only")

    cm = one(docs, "ConfigMap")
    text = cm.get("data", {}).get("logyard.toml", "")
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        check(False, f"{label}: logyard.toml is TOML: {e}")
        parsed = {}
    allowed = example_keys()
    for section, table in parsed.items():
        check(isinstance(table, dict), f"{label}: logyard.toml [{section}] is a table")
        for key in table if isinstance(table, dict) else []:
            check((section, key) in allowed, f"{label}: logyard.toml key {section}.{key} is one of logyard.example.toml")

    sts = one(docs, "StatefulSet")
    spec = sts["spec"]["template"]["spec"]
    c = spec["containers"][0]
    env = env_of(c)
    grace = seconds(env.get("LOGYARD_SERVER_SHUTDOWN_GRACE"))
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", -1)
    check(grace > 0, f"{label}: LOGYARD_SERVER_SHUTDOWN_GRACE set in seconds")
    check(pre_stop > 0, f"{label}: preStop sleep")
    check(spec["terminationGracePeriodSeconds"] > pre_stop + grace, f"{label}: terminationGracePeriodSeconds > preStop + shutdown grace")
    check(c["args"][0] == "serve", f"{label}: the server runs `logyard serve`")
    check(env.get("LOGYARD_SERVER_LISTEN") == "0.0.0.0:8080", f"{label}: listens on 0.0.0.0:8080")
    check(c["ports"][0]["containerPort"] == 8080 and c["ports"][0]["name"] == "http", f"{label}: container port http 8080")
    check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{label}: readiness is /readyz")
    check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", f"{label}: liveness is /healthz")
    check(c["startupProbe"]["httpGet"]["path"] == "/healthz", f"{label}: startup probe")
    vct = sts["spec"].get("volumeClaimTemplates", [])
    if label != "fargate":  # Fargate mounts no volume claims (fargate_only checks its volume)
        check(len(vct) == 1 and vct[0]["metadata"]["name"] == "wal", f"{label}: one PVC template `wal`")
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    check(mounts.get("wal") == "/var/lib/logyard", f"{label}: the write-ahead log volume at /var/lib/logyard")
    sc_name = vct[0]["spec"]["storageClassName"] if vct else None
    for sc in by_kind(docs, "StorageClass"):
        check(sc["metadata"]["name"] == sc_name, f"{label}: the PVCs use the chart's StorageClass")
        check(sc["provisioner"] == "ebs.csi.aws.com" and sc["parameters"]["type"] == "gp3", f"{label}: gp3 through the EBS CSI driver")
        check(sc["parameters"].get("encrypted") == "true", f"{label}: encrypted volumes")
        check(sc["volumeBindingMode"] == "WaitForFirstConsumer", f"{label}: volumes made in the pod's zone")
    keys = {t["topologyKey"] for t in spec.get("topologySpreadConstraints", [])}
    check("topology.kubernetes.io/zone" in keys, f"{label}: spread across zones")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    svc = [s for s in by_kind(docs, "Service") if s["spec"].get("clusterIP") != "None"]
    check(len(svc) == 1, f"{label}: one ClusterIP service")
    if svc:
        sel = svc[0]["spec"]["selector"]
        check(all(pod_labels.get(k) == v for k, v in sel.items()), f"{label}: the Service selects the server pods")
        check(sel.get("app.kubernetes.io/component") == "server", f"{label}: the Service selects only the server (not jobs)")
    pdb = one(docs, "PodDisruptionBudget")
    check(all(pod_labels.get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items()), f"{label}: the PDB selects the server pods")
    np = one(docs, "NetworkPolicy")
    np_sel = np["spec"]["podSelector"]["matchLabels"]
    for name, pspec in pod_specs(docs):
        obj = next(d for d in docs if f"{d['kind']}/{d['metadata']['name']}" == name)
        tmpl = obj["spec"]["template"] if obj["kind"] != "CronJob" else obj["spec"]["jobTemplate"]["spec"]["template"]
        check(all(tmpl["metadata"]["labels"].get(k) == v for k, v in np_sel.items()), f"{label}: the NetworkPolicy covers {name}")
    check(set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}, f"{label}: NetworkPolicy restricts both directions")
    ingress_ports = [p for rule in np["spec"]["ingress"] for p in rule.get("ports", [])]
    allowed_ports = [{"port": "http", "protocol": "TCP"}]
    if any(c.get("name") == "postgresql" for c in one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["ports"]):
        allowed_ports.append({"port": "postgresql", "protocol": "TCP"})
    check(all(p in allowed_ports for p in ingress_ports), f"{label}: ingress only to the HTTP port (and PostgreSQL's when on)")
    own_pods = lambda peer: peer.get("podSelector", {}).get("matchLabels") == np_sel
    check(all("ipBlock" in peer or own_pods(peer) for rule in np["spec"]["ingress"] for peer in rule["from"]),
          f"{label}: ingress only from CIDRs (the VPC) and the other replicas")
    to_peers = [rule for rule in np["spec"]["egress"] if any(own_pods(p) for p in rule.get("to", []))]
    check(len(to_peers) == 1 and to_peers[0]["ports"] == [{"port": "http", "protocol": "TCP"}],
          f"{label}: egress to the other replicas' HTTP port only (live tail)")
    headless = [s for s in by_kind(docs, "Service") if s["spec"].get("clusterIP") == "None"]
    peers = env.get("LOGYARD_TAIL_PEERS", "")
    check(len(headless) == 1 and peers.startswith(headless[0]["metadata"]["name"] + ".") and peers.endswith(":8080"),
          f"{label}: live tails find the replicas through the headless service ({peers})")
    egress = {(p["port"], p.get("protocol")) for rule in np["spec"]["egress"] for p in rule.get("ports", [])}
    check({(53, "UDP"), (53, "TCP"), (443, "TCP"), (80, "TCP")} <= egress, f"{label}: egress to DNS, HTTPS and the Pod Identity agent")
    pia = [rule for rule in np["spec"]["egress"] if any(p.get("ipBlock", {}).get("cidr") == "169.254.170.23/32" for p in rule.get("to", []))]
    check(len(pia) == 1 and pia[0]["ports"] == [{"port": 80, "protocol": "TCP"}], f"{label}: port 80 only to the Pod Identity agent")
    sa = one(docs, "ServiceAccount")
    check(sa["metadata"]["name"] == spec["serviceAccountName"] == "logyard", f"{label}: service account `logyard` (the Pod Identity association's)")
    check("eks.amazonaws.com/role-arn" not in (sa["metadata"].get("annotations") or {}), f"{label}: Pod Identity by default (no IRSA annotation)")


def default_only(docs: list[dict]) -> None:
    kinds = {d["kind"] for d in docs}
    for absent in ("CronJob", "Ingress", "HorizontalPodAutoscaler", "Secret"):
        check(absent not in kinds, f"default: no {absent} unless asked for")
    sts = one(docs, "StatefulSet")
    check(sts["spec"].get("replicas") == 1, "default: one replica on local storage")
    env = env_of(sts["spec"]["template"]["spec"]["containers"][0])
    check("LOGYARD_COMPACTION_INTERVAL" not in env, "default: the server compacts on its own schedule")


def production_only(docs: list[dict]) -> None:
    sts = one(docs, "StatefulSet")
    c = sts["spec"]["template"]["spec"]["containers"][0]
    env = env_of(c)
    url = env.get("LOGYARD_STORAGE_URL", "")
    m = re.fullmatch(r"s3://([^/]+)/(.+)", url)
    check(m is not None, "production: S3 storage")
    bucket = m[1] if m else ""
    region = env.get("AWS_REGION")
    check(bool(region), "production: AWS_REGION set")
    check("@sha256:" in c["image"], "production: image pinned by digest")
    check("replicas" not in sts["spec"], "production: the HPA owns the replica count")
    hpa = one(docs, "HorizontalPodAutoscaler")
    check(hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts["metadata"]["name"]}, "production: HPA scales the StatefulSet")
    check(hpa["spec"]["minReplicas"] >= 2, "production: at least two replicas")
    kinds = {m["type"]: m for m in hpa["spec"]["metrics"]}
    check(kinds.get("Resource", {}).get("resource", {}).get("name") == "cpu", "production: HPA on CPU")
    backlog = kinds.get("Pods", {}).get("pods", {})
    check(backlog.get("metric", {}).get("name") == "logyard_buffered_bytes", "production: HPA on the ingest backlog (logyard_buffered_bytes per pod)")
    check(backlog.get("target", {}).get("type") == "AverageValue", "production: backlog target is an average per pod")
    pdb = one(docs, "PodDisruptionBudget")
    check(pdb["spec"].get("maxUnavailable") == 1, "production: a PodDisruptionBudget lets one server pod go at a time")
    spread = sts["spec"]["template"]["spec"].get("topologySpreadConstraints", [])
    check(any(t["topologyKey"] == "topology.kubernetes.io/zone" for t in spread), "production: server pods spread across zones")
    check(sts["spec"]["template"]["spec"].get("nodeSelector", {}).get("eks.amazonaws.com/capacityType") == "ON_DEMAND", "production: server on on-demand nodes")

    ing = one(docs, "Ingress")
    a = ing["metadata"].get("annotations", {})
    p = "alb.ingress.kubernetes.io/"
    check(ing["spec"].get("ingressClassName") == "alb", "production: ingressClassName alb")
    check(a.get(p + "scheme") in ("internet-facing", "internal"), "production: scheme")
    check(a.get(p + "target-type") == "ip", "production: target-type ip")
    check(bool(re.fullmatch(r"subnet-[0-9a-f]+(,subnet-[0-9a-f]+)+", a.get(p + "subnets", ""))), "production: explicit subnets")
    check(a.get(p + "certificate-arn", "").startswith("arn:aws:acm:"), "production: ACM certificate")
    check('{"HTTPS": 443}' in a.get(p + "listen-ports", ""), "production: HTTPS listener")
    check(a.get(p + "ssl-redirect") == "443", "production: HTTP redirected to HTTPS")
    check(a.get(p + "healthcheck-path") == "/readyz", "production: ALB health check on /readyz")
    check(bool(a.get(p + "group.name")), "production: stable IngressGroup")
    attrs = dict(kv.split("=", 1) for kv in a.get(p + "load-balancer-attributes", "").split(","))
    check(attrs.get("access_logs.s3.enabled") == "true", "production: ALB access logs on")
    check(attrs.get("access_logs.s3.bucket") == bucket, "production: access logs go to the logyard bucket")
    check(attrs.get("access_logs.s3.prefix") == "alb", "production: access logs under alb/")
    check(attrs.get("deletion_protection.enabled") == "true", "production: ALB deletion protection")
    tg = a.get(p + "target-group-attributes", "")
    m = re.search(r"deregistration_delay\.timeout_seconds=(\d+)", tg)
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    check(m is not None and int(m[1]) <= pre_stop, "production: deregistration delay within the preStop pause")
    paths = [pth for rule in ing["spec"]["rules"] for pth in rule["http"]["paths"]]
    check(all(pth["backend"]["service"]["port"] == {"name": "http"} for pth in paths), "production: Ingress backend is the http port")
    check(not any(pth["path"] in ("/", "/metrics") for pth in paths), "production: /metrics is not exposed through the ALB")

    jobs = {j["metadata"]["name"]: j for j in by_kind(docs, "CronJob")}
    args = {n: j["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"] for n, j in jobs.items()}
    check(args.get("logyard-report") == ["report", "daily"], "production: report job runs `logyard report daily`")
    check(args.get("logyard-compaction") == ["compact"], "production: compaction job runs `logyard compact`")
    check(args.get("logyard-retention") == ["retention", "run"], "production: retention job runs `logyard retention run`")
    account = "123456789012"
    expected = f"s3://{bucket}/alb/AWSLogs/{account}/elasticloadbalancing/{region}/"
    check(args.get("logyard-alb-import") == ["import", "alb", expected], f"production: ALB import reads {expected}")
    check(args.get("logyard-catalog") == ["catalog", "glue", "--database", "shop_logs"], "production: catalog job runs `logyard catalog glue --database shop_logs`")
    for n, j in jobs.items():
        check(j["spec"]["concurrencyPolicy"] == "Forbid", f"production: {n} never overlaps itself")
    check(env.get("LOGYARD_COMPACTION_INTERVAL") == "0s", "production: servers leave compaction to the CronJob")
    check(env.get("LOGYARD_RETENTION_INTERVAL") == "0s", "production: servers leave retention to the CronJob")
    sec = one(docs, "Secret")
    check("tokens.toml" in sec.get("stringData", {}), "production: token hashes in the Secret")
    check(env.get("LOGYARD_TOKENS_FILE") == "/etc/logyard/secret/tokens.toml", "production: LOGYARD_TOKENS_FILE points at the mounted Secret")


def shop_rules(docs: list[dict], label: str, expected: bool) -> None:
    text = one(docs, "ConfigMap").get("data", {}).get("logyard.toml", "")
    rules = tomllib.loads(text).get("alerts", {}).get("rules", [])
    names = [r.get("name") for r in rules]
    ready = ["checkout-payment-5xx-rate", "p95-latency-by-route", "payment-declines", "pending-orders-hit-by-5xx", "storefront-silent"]
    if expected:
        check(names == ready, f"{label}: the ready alert rules are in logyard.toml ({names})")
        check(all(r.get("notify") == [] for r in rules), f"{label}: the ready rules notify alerts.notify")
    else:
        check(names == [], f"{label}: no alert rules unless asked for")


def pgwire_only(docs: list[dict]) -> None:
    sts = one(docs, "StatefulSet")
    spec = sts["spec"]["template"]["spec"]
    c = spec["containers"][0]
    env = env_of(c)
    check(env.get("LOGYARD_PGWIRE_LISTEN") == "0.0.0.0:5433", "pgwire: listens on 5433")
    check(env.get("LOGYARD_PGWIRE_REQUIRE_TLS") == "true", "pgwire: TLS required (the password is a token)")
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    tls_dir = mounts.get("pgwire-tls", {}).get("mountPath", "")
    check(tls_dir != "" and mounts["pgwire-tls"].get("readOnly") is True, "pgwire: the TLS Secret mounted read-only")
    check(env.get("LOGYARD_PGWIRE_TLS_CERT_FILE") == f"{tls_dir}/tls.crt", "pgwire: certificate from the mounted Secret")
    check(env.get("LOGYARD_PGWIRE_TLS_KEY_FILE") == f"{tls_dir}/tls.key", "pgwire: key from the mounted Secret")
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    check(vols.get("pgwire-tls", {}).get("secret", {}).get("secretName") == "logyard-pgwire-tls", "pgwire: the TLS volume is pgwire.tlsSecret")
    check({"name": "postgresql", "containerPort": 5433, "protocol": "TCP"} in c["ports"], "pgwire: container port postgresql")
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    ports = services.get("logyard", {}).get("spec", {}).get("ports", [])
    check(any(p["name"] == "postgresql" and p["port"] == 5433 and p["targetPort"] == "postgresql" for p in ports), "pgwire: the Service has port postgresql")
    np = one(docs, "NetworkPolicy")
    rules = np["spec"]["ingress"]
    check(any({"port": "postgresql", "protocol": "TCP"} in r.get("ports", []) and any("ipBlock" in f for f in r.get("from", [])) for r in rules), "pgwire: NetworkPolicy lets the VPC reach port postgresql")

    secrets = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
    ds_secret = secrets.get("logyard-grafana-datasource", {})
    check(ds_secret.get("metadata", {}).get("namespace") == "monitoring", "pgwire: data source in Grafana's namespace")
    check(ds_secret.get("metadata", {}).get("labels", {}).get("grafana_datasource") == "1", "pgwire: labelled for Grafana's sidecar")
    text = ds_secret.get("stringData", {}).get("logyard-datasource.yaml", "")
    provisioned = yaml.safe_load(text) if text else {}
    ds = (provisioned.get("datasources") or [{}])[0]
    check(ds.get("type") == "grafana-postgresql-datasource", "pgwire: Grafana's PostgreSQL data source")
    check(ds.get("url") == "logyard.logyard.svc.cluster.local:5433", "pgwire: data source points at the Service")
    check(ds.get("jsonData", {}).get("sslmode") == "verify-full", "pgwire: data source verifies the certificate")
    check(ds.get("secureJsonData", {}).get("password") == "lyt_ci-values-only-not-a-token", "pgwire: the token is the password")
    check("BEGIN CERTIFICATE" in ds.get("secureJsonData", {}).get("tlsCACert", ""), "pgwire: the CA is given to Grafana")
    # The chart's data source says what deploy/grafana's provisioning file says.
    standalone = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/logyard.yaml").read_text())["datasources"][0]
    for key in ("name", "uid", "type", "access", "user"):
        check(ds.get(key) == standalone.get(key), f"pgwire: data source {key} as in deploy/grafana")
    for key, value in standalone["jsonData"].items():
        if key != "sslmode":
            check(ds.get("jsonData", {}).get(key) == value, f"pgwire: jsonData.{key} as in deploy/grafana")


def fargate_only(docs: list[dict]) -> None:
    sts = one(docs, "StatefulSet")
    spec = sts["spec"]["template"]["spec"]
    env = env_of(spec["containers"][0])
    check("volumeClaimTemplates" not in sts["spec"], "fargate: no EBS volume claims (Fargate mounts none)")
    check("persistentVolumeClaimRetentionPolicy" not in sts["spec"], "fargate: no claim retention policy")
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    check("emptyDir" in vols.get("wal", {}), "fargate: the write-ahead log on the pod's ephemeral storage")
    check(env.get("LOGYARD_INGEST_ACK") == "commit", "fargate: every ingest path answers once committed (ingest.ack)")
    check(seconds(env.get("LOGYARD_INGEST_FLUSH_INTERVAL", "0s")) <= 5, "fargate: a short flush interval")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    check(labels.get("logyard.io/compute") == "fargate", "fargate: the label the Fargate profile selects")
    check(spec.get("nodeSelector") == {"eks.amazonaws.com/compute-type": "fargate"}, "fargate: scheduled on Fargate, not the on-demand group")
    check(by_kind(docs, "StorageClass") == [], "fargate: no gp3 StorageClass")


def main() -> None:
    default, production, pgwire = load(sys.argv[1]), load(sys.argv[2]), load(sys.argv[3])
    fargate = load(sys.argv[4])
    common(fargate, "fargate")
    fargate_only(fargate)
    common(default, "default")
    common(production, "production")
    common(pgwire, "pgwire")
    default_only(default)
    production_only(production)
    pgwire_only(pgwire)
    shop_rules(default, "default", False)
    shop_rules(production, "production", True)
    for f in failures:
        print(f"FAIL: {f}")
    print(f"chart: {passed} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
