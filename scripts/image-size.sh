#!/usr/bin/env bash
# Assembles the container image of deploy/docker/Dockerfile offline and prints the size of
# each layer as registries store it, gzip (Docker's default) or zstd (what docs/deploy-eks.md
# pushes: `compression=zstd,compression-level=9`), and the totals:
#
#   scripts/image-size.sh [--unstripped] BINARY OUT_DIR
#
# BINARY is a release build of logyard (target/release/logyard). The Dockerfile's build stage
# runs deploy/docker/strip-debug.sh on it; so does this script, unless --unstripped, which
# ships the binary as it is (what the Dockerfile did before it stripped). No Docker engine is
# needed, nor gcr.io:
#
#   - the base, gcr.io/distroless/cc-debian13:nonroot, is rebuilt from the Debian trixie
#     packages distroless makes it of (its static/, base/ and cc/config.bzl: base-files,
#     netbase, tzdata, tzdata-legacy, media-types; libc6, libssl3t64, libzstd1, zlib1g;
#     libgomp1, libstdc++6, libgcc-s1, gcc-14-base), one layer per package as distroless
#     has, each with its /var/lib/dpkg/status.d entry; a layer with the CA bundle made from
#     ca-certificates (distroless ships the bundle, not the package); and one layer with its
#     own small files (passwd, group, home directories, /tmp, nsswitch.conf), which
#     distroless spreads over a few tiny layers. The packages are fetched with apt-get
#     download through a private apt configuration under the cache directory (the
#     machine's own sources stay untouched);
#   - the application layers are the Dockerfile's three COPY instructions: the binary, the
#     RDS CA bundle and the /var/lib/logyard directories. The real bundle is fetched from
#     truststore.pki.rds.amazonaws.com at build time; here a stand-in of the same size (PEM
#     certificates from this machine's CA bundle, which compress as the RDS ones do) takes
#     its place, so that this runs offline;
#   - umoci (Debian package) packs them as an OCI image layout in OUT_DIR/layout, gzip
#     compressed, with the Dockerfile's configuration (user, workdir, environment,
#     entrypoint).
#
# Prints a table and writes OUT_DIR/image-size.json. Needs root (the layers keep owners).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cache-dir.sh

strip=1
if [ "${1:-}" = --unstripped ]; then strip=0; shift; fi
binary=${1:?usage: scripts/image-size.sh [--unstripped] BINARY OUT_DIR}
out=${2:?usage: scripts/image-size.sh [--unstripped] BINARY OUT_DIR}
# Size of the AWS RDS global bundle the stand-in takes the place of: 174,184 bytes, the
# largest of the copies of global-bundle.pem found in public repositories (older ones are
# smaller: AWS adds a CA for every new Region).
rds_bundle_bytes=${RDS_BUNDLE_BYTES:-174184}

command -v umoci >/dev/null && command -v zstd >/dev/null ||
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq umoci zstd; }

base_packages=(base-files netbase tzdata tzdata-legacy media-types
               libc6 libssl3t64 libzstd1 zlib1g
               libgomp1 libstdc++6 libgcc-s1 gcc-14-base)

# --- Debian trixie packages, through a private apt configuration -----------------------------
apt_dir="$cache/apt-trixie"
mkdir -p "$apt_dir/state/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/parts" "$apt_dir/debs"
touch "$apt_dir/state/status"
keys=/usr/share/keyrings/debian-archive-trixie-automatic.gpg,/usr/share/keyrings/debian-archive-trixie-stable.gpg
security_keys=/usr/share/keyrings/debian-archive-trixie-security-automatic.gpg,/usr/share/keyrings/debian-archive-trixie-stable.gpg
cat >"$apt_dir/sources.list" <<EOF
deb [arch=amd64 signed-by=$keys] http://deb.debian.org/debian trixie main
deb [arch=amd64 signed-by=$keys] http://deb.debian.org/debian trixie-updates main
deb [arch=amd64 signed-by=$security_keys] http://deb.debian.org/debian-security trixie-security main
EOF
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/parts"
          -o "Dir::State=$apt_dir/state" -o "Dir::State::status=$apt_dir/state/status"
          -o "Dir::Cache=$apt_dir/cache" -o "APT::Architecture=amd64" -o "APT::Architectures::=amd64")
apt-get "${apt_opts[@]}" -qq update
rm -f "$apt_dir/debs/"*.deb
(cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" -qq download "${base_packages[@]}" ca-certificates)

# --- Layer trees ---------------------------------------------------------------------------
rm -rf "$out"
mkdir -p "$out/trees" "$out/tars"
out=$(cd "$out" && pwd)
layers=()   # name of each layer, in order

for pkg in "${base_packages[@]}"; do
  deb=$(ls "$apt_dir/debs/${pkg}_"*.deb)
  mkdir -p "$out/trees/$pkg"
  dpkg-deb -x "$deb" "$out/trees/$pkg"
  mkdir -p "$out/trees/$pkg/var/lib/dpkg/status.d"   # as distroless records each package
  dpkg-deb -f "$deb" >"$out/trees/$pkg/var/lib/dpkg/status.d/$pkg"
  echo "$pkg $(dpkg-deb -f "$deb" Version)" >>"$out/packages.txt"
  layers+=("$pkg")
done

# The CA bundle, concatenated from ca-certificates' certificates as distroless does, with the
# package's copyright and status.d entry.
deb=$(ls "$apt_dir/debs/ca-certificates_"*.deb)
mkdir -p "$out/ca-certificates"
dpkg-deb -x "$deb" "$out/ca-certificates"
c="$out/trees/cacerts"
mkdir -p "$c/etc/ssl/certs" "$c/usr/share/doc/ca-certificates" "$c/var/lib/dpkg/status.d"
find "$out/ca-certificates/usr/share/ca-certificates" -name '*.crt' | sort |
  xargs cat >"$c/etc/ssl/certs/ca-certificates.crt"
cp "$out/ca-certificates/usr/share/doc/ca-certificates/copyright" "$c/usr/share/doc/ca-certificates/"
dpkg-deb -f "$deb" >"$c/var/lib/dpkg/status.d/ca-certificates"
echo "ca-certificates $(dpkg-deb -f "$deb" Version)" >>"$out/packages.txt"
layers+=(cacerts)

# distroless's own files: the users and groups of the nonroot variant, home directories, /tmp,
# nsswitch.conf.
d="$out/trees/distroless"
mkdir -p "$d/etc" "$d/root" "$d/home/nonroot" "$d/tmp"
cat >"$d/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$d/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
EOF
printf 'hosts: files dns\n' >"$d/etc/nsswitch.conf"
chmod 0700 "$d/root" "$d/home/nonroot"
chmod 1777 "$d/tmp"
chown 65532:65532 "$d/home/nonroot"
layers+=(distroless)

# The Dockerfile's COPY instructions, one layer each.
mkdir -p "$out/trees/app-binary/usr/local/bin"
if [ "$strip" = 1 ]; then
  mkdir -p "$out/debug"
  deploy/docker/strip-debug.sh "$binary" "$out/trees/app-binary/usr/local/bin/logyard" "$out/debug/logyard.debug"
else
  cp "$binary" "$out/trees/app-binary/usr/local/bin/logyard"
fi
chmod 0755 "$out/trees/app-binary/usr/local/bin/logyard"
layers+=(app-binary)

mkdir -p "$out/trees/app-rds-bundle/usr/share/logyard"
python3 - "$rds_bundle_bytes" "$out/trees/cacerts/etc/ssl/certs/ca-certificates.crt" \
  "$out/trees/app-rds-bundle/usr/share/logyard/rds-global-bundle.pem" <<'EOF'
import sys
size, source, dest = int(sys.argv[1]), sys.argv[2], sys.argv[3]
certs = [c + "-----END CERTIFICATE-----\n" for c in open(source).read().split("-----END CERTIFICATE-----\n") if "BEGIN" in c]
data = ""
for c in certs * 4:
    if len(data) + len(c) > size:
        break
    data += c
data += "\n" * (size - len(data))  # pad to the exact size
open(dest, "w").write(data)
EOF
layers+=(app-rds-bundle)

mkdir -p "$out/trees/app-var-lib/var/lib/logyard/wal" "$out/trees/app-var-lib/var/lib/logyard/data"
chown -R 65532:65532 "$out/trees/app-var-lib/var/lib/logyard"
layers+=(app-var-lib)

# --- OCI image layout with umoci ------------------------------------------------------------
layout="$out/layout"
umoci init --layout "$layout"
umoci new --image "$layout:logyard"
for name in "${layers[@]}"; do
  # Reproducible tars: sorted names, fixed times, numeric owners as extracted.
  tar --create --file "$out/tars/$name.tar" --directory "$out/trees/$name" --sort=name \
      --mtime=@0 --numeric-owner --format=posix --pax-option=delete=atime,delete=ctime .
  umoci raw add-layer --image "$layout:logyard" --history.created_by "$name" "$out/tars/$name.tar"
done
umoci config --image "$layout:logyard" \
  --config.user 65532:65532 --config.workingdir /var/lib/logyard \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --config.env LOGYARD_SERVER_LISTEN=0.0.0.0:8080 \
  --config.env LOGYARD_STORAGE_URL=/var/lib/logyard/data \
  --config.env LOGYARD_STORAGE_WAL_DIR=/var/lib/logyard/wal \
  --config.env LOGYARD_LOG_FORMAT=json \
  --config.entrypoint /usr/local/bin/logyard --config.cmd serve \
  --config.exposedports 8080/tcp --config.stopsignal SIGTERM \
  --config.label org.opencontainers.image.title=logyard

# --- Sizes -----------------------------------------------------------------------------------
# umoci compresses with pgzip (gzip in independent blocks); each layer is also compressed here
# as one gzip -6 stream (Docker's and BuildKit's default), as a check on the figure, and with
# zstd -9 (BuildKit's compression=zstd,compression-level=9; ECR, containerd and Fargate pull
# zstd layers).
python3 - "$out" "${layers[@]}" <<'EOF'
import json, os, subprocess, sys, zlib
out, names = sys.argv[1], sys.argv[2:]
layout = f"{out}/layout"
blob = lambda d: f"{layout}/blobs/{d.replace(':', '/')}"
index = json.load(open(f"{layout}/index.json"))
manifest_desc = index["manifests"][0]
manifest = json.load(open(blob(manifest_desc["digest"])))
layers = manifest["layers"]
assert len(layers) == len(names), (len(layers), names)
def gzip6(path):
    z, n = zlib.compressobj(6, zlib.DEFLATED, 31), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += len(z.compress(chunk))
    return n + len(z.flush())
def zstd9(path):
    return len(subprocess.run(["zstd", "-q", "-9", "-T1", "-c", path], check=True, capture_output=True).stdout)
rows, total = [], 0
for name, layer in zip(names, layers):
    size = layer["size"]
    assert os.path.getsize(blob(layer["digest"])) == size
    tar = f"{out}/tars/{name}.tar"
    rows.append({"layer": name, "tar_bytes": os.path.getsize(tar), "gzip_bytes": size,
                 "gzip6_check_bytes": gzip6(tar), "zstd9_bytes": zstd9(tar)})
    total += size
base = sum(r["gzip_bytes"] for r in rows if not r["layer"].startswith("app-"))
app = total - base
meta = manifest["config"]["size"] + manifest_desc["size"]
check = sum(r["gzip6_check_bytes"] for r in rows)
zstd = sum(r["zstd9_bytes"] for r in rows)
summary = {"layers": rows, "base_gzip_bytes": base, "app_gzip_bytes": app, "layers_gzip6_check_bytes": check,
           "layers_gzip_bytes": total, "config_and_manifest_bytes": meta,
           "image_bytes": total + meta, "image_gzip6_bytes": check + meta, "image_zstd9_bytes": zstd + meta}
json.dump(summary, open(f"{out}/image-size.json", "w"), indent=1)
mb = lambda b: f"{b / 1e6:9.2f} MB"
print(f"{'layer':<16} {'tar':>12} {'gzip (umoci)':>12} {'gzip -6':>12} {'zstd -9':>12}")
for r in rows:
    print(f"{r['layer']:<16} {mb(r['tar_bytes'])} {mb(r['gzip_bytes'])} {mb(r['gzip6_check_bytes'])} {mb(r['zstd9_bytes'])}")
print(f"{'base (distroless cc-debian13)':<29} {mb(base)}")
print(f"{'application':<29} {mb(app)}")
print(f"{'image, umoci gzip':<29} {mb(total + meta)}  ({total + meta:,} bytes with config and manifest)")
print(f"{'image, gzip -6 layers':<29} {mb(check + meta)}")
print(f"{'image, zstd -9 layers':<29} {mb(zstd + meta)}")
EOF
