"""Parses deploy/terraform with python-hcl2 and asserts its security and shape properties.

Usage: test_terraform.py TERRAFORM_DIR CHART_VALUES (deploy/terraform, the chart's values.yaml).

No terraform binary is needed: the configuration is read as HCL. Checked: every .tf and
.tfvars parses; module majors (vpc 6, eks 21) and the v21 input names; Kubernetes 1.34; the
add-ons; the SPOT node group with at least three instance types and an on-demand group, on
AL2023; the bucket's public access block, TLS-only policy, encryption, versioning and
lifecycle rules; the ALB access-log location matching the chart; RDS private, encrypted,
TLS-forced with a managed password; logyard's IAM policy without wildcard actions; Pod
Identity with IRSA as an option; the load balancer controller's region and VPC; Karpenter's
NodePool mixing SPOT and on-demand.
"""

import re
import sys
import unittest
from pathlib import Path

import hcl2
import yaml

TF_DIR = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("deploy/terraform")
CHART_VALUES = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("deploy/helm/logyard/values.yaml")


def unquote(v):
    """python-hcl2 keeps string quotes ("\"x\""); strips them, recursively."""
    if isinstance(v, str) and len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        return v[1:-1]
    if isinstance(v, list):
        return [unquote(x) for x in v]
    if isinstance(v, dict):
        return {unquote(k): unquote(x) for k, x in v.items() if k != "__is_block__"}
    return v


def heredoc(v: str) -> str:
    """The text of a <<-EOT heredoc as python-hcl2 returns it (marker lines kept, indented)."""
    import textwrap

    m = re.fullmatch(r"<<-?(\w+)\n(.*)\n\s*\1\s*", v, re.S)
    if not m:
        raise AssertionError(f"not a heredoc: {v[:40]!r}")
    return textwrap.dedent(m[2])


def load_all() -> dict:
    """Every block of every .tf file, by block type then labels."""
    out: dict = {"resource": {}, "data": {}, "module": {}, "variable": {}, "output": {}, "locals": {}}
    for path in sorted(TF_DIR.glob("*.tf")):
        with open(path, encoding="utf-8") as f:
            doc = unquote(hcl2.load(f))
        for rtype in ("resource", "data"):
            for block in doc.get(rtype, []):
                for kind, named in block.items():
                    for name, body in named.items():
                        out[rtype][f"{kind}.{name}"] = body
        for btype in ("module", "variable", "output"):
            for block in doc.get(btype, []):
                for name, body in block.items():
                    out[btype][name] = body
        for block in doc.get("locals", []):
            out["locals"].update(block)
    return out


TF = load_all()


def statements(doc_body: dict) -> list[dict]:
    """The statements of an aws_iam_policy_document, static and dynamic."""
    out = list(doc_body.get("statement", []))
    for dyn in doc_body.get("dynamic", []):
        for _, body in dyn.items():
            for content in body.get("content", []):
                out.append(content)
    return out


def major(constraint: str) -> int:
    m = re.fullmatch(r"~>\s*(\d+)(\.\d+)*", constraint.strip())
    if not m:
        raise AssertionError(f"version {constraint!r} is not a ~> constraint")
    return int(m[1])


class Parse(unittest.TestCase):
    def test_every_file_parses(self):
        files = list(TF_DIR.glob("*.tf")) + list(TF_DIR.glob("examples/*.tfvars"))
        self.assertGreater(len(files), 5)
        for path in files:
            with open(path, encoding="utf-8") as f:
                hcl2.load(f)

    def test_example_tfvars_set_only_declared_variables(self):
        tfvars = list(TF_DIR.glob("examples/*.tfvars"))
        self.assertTrue(tfvars, "examples/ has a .tfvars file")
        for path in tfvars:
            with open(path, encoding="utf-8") as f:
                values = unquote(hcl2.load(f))
            unknown = set(values) - set(TF["variable"]) - {"__comments__"}
            self.assertFalse(unknown, f"{path.name} sets undeclared variables {unknown}")
            if "kubernetes_version" in values:
                self.assertEqual(values["kubernetes_version"], "1.34")

    def test_variables_are_described(self):
        for name, body in TF["variable"].items():
            self.assertTrue(body.get("description"), f"variable {name} has a description")


class Versions(unittest.TestCase):
    def test_registry_modules_are_pinned_to_current_majors(self):
        expected = {
            "terraform-aws-modules/vpc/aws": 6,
            "terraform-aws-modules/eks/aws": 21,
            "terraform-aws-modules/eks-pod-identity/aws": 2,
        }
        seen = set()
        for name, body in TF["module"].items():
            source = body["source"].split("//")[0]
            self.assertIn(source, expected, f"module {name}: unexpected source {source}")
            self.assertEqual(major(body["version"]), expected[source], f"module {name}: {source} {body['version']}")
            seen.add(source)
        self.assertEqual(seen, set(expected))

    def test_kubernetes_134_and_v21_inputs(self):
        eks = TF["module"]["eks"]
        self.assertEqual(TF["variable"]["kubernetes_version"]["default"], "1.34")
        self.assertEqual(eks["kubernetes_version"], "${var.kubernetes_version}")
        self.assertEqual(eks["name"], "${var.name}")
        self.assertIn("addons", eks)
        for old in ("cluster_name", "cluster_version", "cluster_addons", "cluster_endpoint_public_access"):
            self.assertNotIn(old, eks, f"eks v21 renamed {old}")

    def test_providers(self):
        with open(TF_DIR / "versions.tf", encoding="utf-8") as f:
            doc = unquote(hcl2.load(f))
        providers = doc["terraform"][0]["required_providers"][0]
        self.assertEqual(major(providers["aws"]["version"]), 6, "AWS provider v6 (required by vpc v6 and eks v21)")
        self.assertEqual(major(providers["helm"]["version"]), 3)


class Cluster(unittest.TestCase):
    def test_addons(self):
        addons = TF["module"]["eks"]["addons"]
        self.assertEqual(set(addons), {"coredns", "kube-proxy", "vpc-cni", "eks-pod-identity-agent", "aws-ebs-csi-driver"})
        cni = addons["vpc-cni"]
        self.assertIs(cni.get("before_compute"), True, "vpc-cni is configured before the nodes exist")
        config = cni["configuration_values"]
        for needle in ('ENABLE_PREFIX_DELEGATION = "true"', 'enableNetworkPolicy = "true"'):
            self.assertIn(needle, re.sub(r"\s+", " ", config))
        self.assertIs(addons["eks-pod-identity-agent"].get("before_compute"), True)
        self.assertIn("pod_identity_association", addons["aws-ebs-csi-driver"])

    def test_node_groups(self):
        groups = TF["module"]["eks"]["eks_managed_node_groups"]
        spot = [g for g in groups.values() if g.get("capacity_type") == "SPOT"]
        on_demand = [g for g in groups.values() if g.get("capacity_type") == "ON_DEMAND"]
        self.assertEqual(len(spot), 1, "one SPOT node group")
        self.assertEqual(len(on_demand), 1, "one on-demand node group for the StatefulSet")
        types = spot[0]["instance_types"]
        if isinstance(types, str):
            m = re.fullmatch(r"\$\{var\.(\w+)\}", types)
            self.assertIsNotNone(m, types)
            types = TF["variable"][m[1]]["default"]
        self.assertGreaterEqual(len(types), 3, "SPOT across at least three instance types")
        self.assertGreaterEqual(len({t.split(".")[0] for t in types}), 3, "from several families")
        for g in groups.values():
            self.assertTrue(g["ami_type"].startswith("AL2023_"), "Amazon Linux 2023 nodes")

    def test_fargate_profile_selects_the_charts_fargate_pods(self):
        self.assertIs(TF["variable"]["enable_fargate"]["default"], False)
        profiles = TF["module"]["eks"]["fargate_profiles"]
        self.assertIn("logyard", profiles, profiles)
        with open(CHART_VALUES, encoding="utf-8") as f:
            values = yaml.safe_load(f)
        m = re.search(r'"logyard\.io/compute"\s*=\s*"([^"]+)"', profiles)
        self.assertIsNotNone(m, profiles)
        self.assertEqual(m[1], values["fargate"]["profileLabel"])
        self.assertIn("namespace = var.namespace", profiles.replace("  ", " "))

    def test_vpc(self):
        vpc = TF["module"]["vpc"]
        self.assertEqual(vpc["single_nat_gateway"], "${var.single_nat_gateway}")
        self.assertIs(TF["variable"]["single_nat_gateway"]["default"], True)
        self.assertEqual(vpc["public_subnet_tags"]["kubernetes.io/role/elb"], "1")
        self.assertIn('"kubernetes.io/role/internal-elb" = "1"', vpc["private_subnet_tags"])

    def test_load_balancer_controller(self):
        lbc = TF["resource"]["helm_release.aws_load_balancer_controller"]
        self.assertEqual(lbc["chart"], "aws-load-balancer-controller")
        values = re.sub(r"\s+", " ", lbc["values"][0])
        self.assertIn("region = var.region", values)
        self.assertIn("vpcId = module.vpc.vpc_id", values)
        pod_identity = TF["module"]["lb_controller_pod_identity"]
        self.assertIs(pod_identity["attach_aws_lb_controller_policy"], True)
        self.assertEqual(pod_identity["associations"]["this"]["service_account"], "aws-load-balancer-controller")

    def test_karpenter_mixes_spot_and_on_demand(self):
        pool = TF["resource"]["kubectl_manifest.karpenter_node_pool"]["yaml_body"]
        body = yaml.safe_load(re.sub(r"\$\{[^}]*\}", "x", heredoc(pool)))
        reqs = {r["key"]: r["values"] for r in body["spec"]["template"]["spec"]["requirements"]}
        self.assertEqual(set(reqs["karpenter.sh/capacity-type"]), {"spot", "on-demand"})
        self.assertEqual(major(TF["module"]["karpenter"]["version"]), 21)


class Bucket(unittest.TestCase):
    def test_public_access_blocked(self):
        pab = TF["resource"]["aws_s3_bucket_public_access_block.logyard"]
        self.assertEqual(pab["bucket"], "${aws_s3_bucket.logyard.id}")
        for key in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
            self.assertIs(pab[key], True, key)
        own = TF["resource"]["aws_s3_bucket_ownership_controls.logyard"]
        self.assertEqual(own["rule"][0]["object_ownership"], "BucketOwnerEnforced")

    def test_tls_only_policy(self):
        policy = TF["resource"]["aws_s3_bucket_policy.logyard"]
        self.assertEqual(policy["policy"], "${data.aws_iam_policy_document.bucket.json}")
        stmts = statements(TF["data"]["aws_iam_policy_document.bucket"])
        deny = [
            s for s in stmts
            if s.get("effect") == "Deny"
            and any(c["test"] == "Bool" and c["variable"] == "aws:SecureTransport" and c["values"] == ["false"] for c in s.get("condition", []))
        ]
        self.assertEqual(len(deny), 1, "a Deny statement for aws:SecureTransport = false")
        self.assertEqual(set(deny[0]["resources"]), {"${aws_s3_bucket.logyard.arn}", "${aws_s3_bucket.logyard.arn}/*"})
        self.assertEqual(deny[0]["principals"][0]["identifiers"], ["*"])

    def test_encryption_and_versioning(self):
        sse = TF["resource"]["aws_s3_bucket_server_side_encryption_configuration.logyard"]
        algo = sse["rule"][0]["apply_server_side_encryption_by_default"][0]["sse_algorithm"]
        self.assertIn(algo, ("AES256", "aws:kms"))
        ver = TF["resource"]["aws_s3_bucket_versioning.logyard"]
        self.assertEqual(ver["versioning_configuration"][0]["status"], "Enabled")

    def test_lifecycle(self):
        rules = {r["id"]: r for r in TF["resource"]["aws_s3_bucket_lifecycle_configuration.logyard"]["rule"]}
        abort = [r for r in rules.values() if "abort_incomplete_multipart_upload" in r]
        self.assertEqual(abort[0]["abort_incomplete_multipart_upload"][0]["days_after_initiation"], 1)
        incoming = rules["incoming-expires"]
        self.assertEqual(incoming["filter"][0]["prefix"], "${local.storage_prefix}/incoming/")
        self.assertIn("days", incoming["expiration"][0])
        archive = rules["archive-to-glacier-ir"]
        self.assertEqual(archive["filter"][0]["prefix"], "${local.storage_prefix}/archive/")
        self.assertEqual(archive["transition"][0]["storage_class"], "GLACIER_IR")
        self.assertEqual(TF["variable"]["archive_glacier_ir_days"]["default"], 30)

    def test_alb_access_logs_where_the_chart_and_import_expect(self):
        with open(CHART_VALUES, encoding="utf-8") as f:
            values = yaml.safe_load(f)
        self.assertEqual(TF["variable"]["alb_log_prefix"]["default"], values["ingress"]["accessLogs"]["prefix"])
        stmts = statements(TF["data"]["aws_iam_policy_document.bucket"])
        delivery = [s for s in stmts if s.get("sid", "").startswith("AlbAccessLogDelivery")]
        self.assertTrue(delivery)
        for s in delivery:
            self.assertEqual(s["actions"], ["s3:PutObject"])
            self.assertEqual(s["resources"], ["${aws_s3_bucket.logyard.arn}/${local.alb_log_prefix}/AWSLogs/${local.account_id}/*"])
        services = [p["identifiers"] for s in delivery for p in s["principals"] if p["type"] == "Service"]
        self.assertIn(["logdelivery.elasticloadbalancing.amazonaws.com"], services)


class Database(unittest.TestCase):
    def test_rds_private_encrypted_tls(self):
        db = TF["resource"]["aws_db_instance.orders"]
        self.assertIs(db["publicly_accessible"], False)
        self.assertIs(db["storage_encrypted"], True)
        self.assertIs(db["manage_master_user_password"], True)
        self.assertNotIn("password", db)
        self.assertEqual(db["engine"], "postgres")
        self.assertEqual(TF["variable"]["rds_engine_version"]["default"].split(".")[0], "16")
        self.assertEqual(db["db_subnet_group_name"], "${module.vpc.database_subnet_group_name}")
        self.assertIs(db["deletion_protection"], True)
        self.assertNotEqual(db.get("ca_cert_identifier"), "rds-ca-2019")
        params = TF["resource"]["aws_db_parameter_group.orders"]
        self.assertEqual(params["family"], "postgres16")
        self.assertIn({"name": "rds.force_ssl", "value": "1"}, params["parameter"])

    def test_rds_reachable_only_from_the_nodes(self):
        rules = [(k, r) for k, r in TF["resource"].items() if k.startswith("aws_vpc_security_group_ingress_rule.") and "rds" in k]
        self.assertTrue(rules)
        for key, rule in rules:
            self.assertEqual(rule["security_group_id"], "${aws_security_group.rds[0].id}")
            self.assertNotIn("cidr_ipv4", rule, f"{key}: no CIDR-wide access")
            self.assertIn("referenced_security_group_id", rule)
            self.assertEqual((rule["from_port"], rule["to_port"]), (5432, 5432))
        self.assertEqual(dict(rules)["aws_vpc_security_group_ingress_rule.rds_from_nodes"]["referenced_security_group_id"], "${module.eks.node_security_group_id}")

    def test_rds_proxy_requires_tls(self):
        proxy = TF["resource"]["aws_db_proxy.orders"]
        self.assertIs(proxy["require_tls"], True)


class LogyardRole(unittest.TestCase):
    def test_no_wildcard_actions(self):
        stmts = statements(TF["data"]["aws_iam_policy_document.logyard"])
        self.assertGreaterEqual(len(stmts), 5)
        for s in stmts:
            self.assertNotEqual(s.get("effect", "Allow"), "Deny")
            self.assertNotIn("not_actions", s)
            for action in s["actions"]:
                self.assertNotIn("*", action, f"{s.get('sid')}: {action}")
            for resource in s["resources"]:
                self.assertNotEqual(resource, "*", f"{s.get('sid')}: resource *")

    def test_scoped_to_its_prefix_secret_and_stream(self):
        stmts = {s["sid"]: s for s in statements(TF["data"]["aws_iam_policy_document.logyard"])}
        self.assertEqual(stmts["ReadWriteOwnPrefix"]["resources"], ["${aws_s3_bucket.logyard.arn}/${local.storage_prefix}/*"])
        self.assertEqual(stmts["ReadAlbAccessLogs"]["actions"], ["s3:GetObject"])
        listing = stmts["ListOwnPrefixes"]
        self.assertEqual(listing["condition"][0]["variable"], "s3:prefix")
        self.assertEqual(stmts["OrdersDatabaseSecret"]["resources"], ["${local.rds_secret_arn}"])
        self.assertEqual(stmts["ReadKinesisStream"]["resources"], ["${aws_kinesis_stream.logs[0].arn}"])
        self.assertEqual(
            sorted(stmts["ReadKinesisStream"]["actions"]),
            ["kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards"],
        )
        self.assertEqual(stmts["DecryptThroughSecretsManagerAndKinesis"]["condition"][0]["variable"], "kms:ViaService")
        # The Glue catalog: its own database and tables, no wildcard over the catalog.
        glue = stmts["RegisterTablesInGlue"]
        self.assertEqual(
            sorted(glue["actions"]),
            ["glue:CreateTable", "glue:DeleteTable", "glue:GetDatabase", "glue:GetTable", "glue:GetTables", "glue:UpdateTable"],
        )
        self.assertTrue(all("${var.glue_database}" in r or r.endswith(":catalog") for r in glue["resources"]), glue["resources"])
        # A bucket in another account: only the configured role may be assumed.
        self.assertEqual(stmts["AssumeStorageRole"]["actions"], ["sts:AssumeRole"])
        self.assertEqual(stmts["AssumeStorageRole"]["resources"], ["${var.storage_role_arn}"])
        self.assertEqual(TF["variable"]["storage_role_arn"]["default"], "")
        attached = TF["resource"]["aws_iam_role_policy.logyard"]
        self.assertEqual(attached["policy"], "${data.aws_iam_policy_document.logyard.json}")

    def test_pod_identity_default_irsa_option(self):
        self.assertEqual(TF["variable"]["logyard_auth"]["default"], "pod_identity")
        assoc = TF["resource"]["aws_eks_pod_identity_association.logyard"]
        self.assertEqual(assoc["role_arn"], "${aws_iam_role.logyard.arn}")
        with open(CHART_VALUES, encoding="utf-8") as f:
            values = yaml.safe_load(f)
        self.assertEqual(TF["variable"]["service_account"]["default"], values["serviceAccount"]["name"])
        trust = statements(TF["data"]["aws_iam_policy_document.logyard_trust"])
        pod_identity = [s for s in trust if s.get("sid") == "EksPodIdentity"][0]
        self.assertEqual(set(pod_identity["actions"]), {"sts:AssumeRole", "sts:TagSession"})
        self.assertEqual(pod_identity["principals"][0]["identifiers"], ["pods.eks.amazonaws.com"])
        irsa = [s for s in trust if s.get("sid") == "Irsa"][0]
        self.assertEqual(irsa["actions"], ["sts:AssumeRoleWithWebIdentity"])
        subs = [c for c in irsa["condition"] if c["variable"].endswith(":sub")]
        self.assertEqual(subs[0]["values"], ["system:serviceaccount:${var.namespace}:${var.service_account}"])


class Optional(unittest.TestCase):
    def test_kinesis_encrypted_and_optional(self):
        stream = TF["resource"]["aws_kinesis_stream.logs"]
        self.assertEqual(stream["encryption_type"], "KMS")
        self.assertIs(TF["variable"]["enable_kinesis"]["default"], False)

    def test_athena_workgroup_encrypts_results_and_caps_scans(self):
        wg = TF["resource"]["aws_athena_workgroup.logs"]["configuration"][0]
        self.assertIs(wg["enforce_workgroup_configuration"], True)
        self.assertEqual(wg["bytes_scanned_cutoff_per_query"], "${var.athena_bytes_scanned_cutoff}")
        result = wg["result_configuration"][0]
        self.assertEqual(result["output_location"], "s3://${aws_s3_bucket.logyard.bucket}/athena-results/")
        self.assertEqual(result["encryption_configuration"][0]["encryption_option"], "SSE_KMS")
        db = TF["resource"]["aws_glue_catalog_database.logs"]
        self.assertEqual(db["name"], "${var.glue_database}")
        with open(CHART_VALUES, encoding="utf-8") as f:
            values = yaml.safe_load(f)
        self.assertEqual(TF["variable"]["glue_database"]["default"], values["cronJobs"]["catalog"]["database"])

    def test_outputs_feed_the_chart(self):
        for name in ("storage_url", "logyard_role_arn", "public_subnet_ids", "vpc_cidr", "helm_values", "alb_access_logs_url"):
            self.assertIn(name, TF["output"])
        with open(CHART_VALUES, encoding="utf-8") as f:
            values = yaml.safe_load(f)
        # The keys the helm_values output sets, as paths, must be keys of the chart's values.
        expr = TF["output"]["helm_values"]["value"].split("yamlencode(", 1)[1]
        expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
        paths, stack, pending = [], [], None
        for m in re.finditer(r"(\w+) = |\{|\}", expr):
            if m[1]:
                pending = m[1]
                paths.append(tuple(stack) + (pending,))
            elif m[0] == "{":
                stack.append(pending)
                pending = None
            else:
                stack.pop()
                if not stack:
                    break
        paths = [tuple(k for k in p if k) for p in paths]
        self.assertIn(("storage", "url"), paths)
        for path in paths:
            node = values
            for key in path:
                if node == {} and node is not values:
                    break  # a free-form map such as nodeSelector
                self.assertIsInstance(node, dict)
                self.assertIn(key, node, f"helm_values output sets {'.'.join(path)}, which the chart's values do not have")
                node = node[key]

if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"], verbosity=1)
