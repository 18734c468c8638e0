#!/usr/bin/env bash
# Measures a cold release build of the logyard binary (the one the container image ships):
#
#   scripts/release-build.sh OUT_DIR
#
# Builds `cargo build --release --locked --bin logyard --timings` into the target directory
# $CARGO_TARGET_DIR, or the fresh OUT_DIR/target when it is unset. The build must be cold: a
# target directory that holds a release build already is refused (the debug builds of the
# tests may stay: release and debug share nothing). The crates must be downloaded already
# (`cargo fetch --locked`). It runs niced, under /usr/bin/time -v. The machine may
# be shared, so besides the wall time it records the build's CPU time (user + sys, which does
# not depend on other work) and the CPU time the rest of the machine used meanwhile (from
# /proc/stat), and samples the load average every 15 s. Then it strips a copy of the binary
# with deploy/docker/strip-debug.sh (the commands the image uses) and prints a JSON summary:
# times, load, binary sizes and the 15 crates that took longest (cargo-timing.html).
# Files left in OUT_DIR: time.txt, load.txt, build.log, summary.json, stripped/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/release-build.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
target=${CARGO_TARGET_DIR:-$out/target}
if [ -e "$target/release" ]; then
  echo "$target/release exists: a cold build needs a target directory without a release build" >&2
  exit 1
fi

# Busy and total jiffies of the whole machine (all CPUs) from /proc/stat.
cpu_jiffies() { awk '/^cpu /{busy=$2+$3+$4+$7+$8+$9; print busy, busy+$5+$6}' /proc/stat; }

(while sleep 15; do echo "$(date +%s) $(cut -d' ' -f1-3 /proc/loadavg)"; done) >"$out/load.txt" &
sampler=$!
trap 'kill "$sampler" 2>/dev/null || true' EXIT

read -r busy0 total0 < <(cpu_jiffies)
start=$(date +%s.%N)
CARGO_TARGET_DIR="$target" CARGO_TERM_COLOR=never nice -n 19 /usr/bin/time -v -o "$out/time.txt" \
  cargo build --release --locked --bin logyard --timings >"$out/build.log" 2>&1
end=$(date +%s.%N)
read -r busy1 total1 < <(cpu_jiffies)
kill "$sampler" 2>/dev/null || true

mkdir -p "$out/stripped"
deploy/docker/strip-debug.sh "$target/release/logyard" "$out/stripped/logyard" "$out/stripped/logyard.debug"

python3 - "$out" "$target" "$start" "$end" "$busy0" "$busy1" "$total0" "$total1" "$(getconf CLK_TCK)" "$(nproc)" <<'EOF'
import json, os, re, sys
out, target = sys.argv[1], sys.argv[2]
start, end = float(sys.argv[3]), float(sys.argv[4])
busy0, busy1, total0, total1, hz, ncpu = (int(x) for x in sys.argv[5:11])
time_v = open(f"{out}/time.txt").read()
def field(name):
    return float(re.search(re.escape(name) + r": (\S+)", time_v).group(1))
user, sys_ = field("User time (seconds)"), field("System time (seconds)")
wall = end - start
machine_busy = (busy1 - busy0) / hz
loads = [float(l.split()[1]) for l in open(f"{out}/load.txt") if l.strip()]
html = open(f"{target}/cargo-timings/cargo-timing.html").read()
units = json.loads(re.search(r"const UNIT_DATA = (\[.*?\]);\n", html, re.S).group(1))
per_crate = {}
for u in units:
    key = u["name"] + (" (build script)" if u["mode"] == "run-custom-build" or u["target"] == " build-script" else "")
    per_crate[key] = per_crate.get(key, 0.0) + u["duration"]
top = sorted(per_crate.items(), key=lambda kv: -kv[1])[:15]
size = lambda p: os.path.getsize(p)
summary = {
    "wall_seconds": round(wall, 1),
    "cpu_seconds_user": user,
    "cpu_seconds_sys": sys_,
    "cpu_seconds_build": round(user + sys_, 1),
    "max_rss_kib": int(field("Maximum resident set size (kbytes)")),
    "cpus": ncpu,
    "cpu_seconds_available": round(wall * ncpu, 1),
    "cpu_seconds_machine_busy": round(machine_busy, 1),
    "cpu_seconds_other_work": round(machine_busy - user - sys_, 1),
    "load_average_1min_mean": round(sum(loads) / len(loads), 2) if loads else None,
    "load_average_1min_max": max(loads) if loads else None,
    "units": len(units),
    "unit_seconds_total": round(sum(u["duration"] for u in units), 1),
    "binary_bytes": size(f"{target}/release/logyard"),
    "stripped_bytes": size(f"{out}/stripped/logyard"),
    "debug_file_bytes": size(f"{out}/stripped/logyard.debug"),
    "top_crates_seconds": [[k, round(v, 1)] for k, v in top],
}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
print(json.dumps(summary, indent=1))
EOF
