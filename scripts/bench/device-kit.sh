#!/bin/bash
# A kit that measures `replay --workers N` scaling on a bigger machine that has python3 but no
# Node, Java or tcpdump (the 16-core device machine), in ONE bounded run:
#   ../shared/device/bundle.sh's node binary and app (dist + production node_modules), bench/
#   (scaling.mjs, lib/, and run-workers.mjs when this checkout has it), the small fixture the
#   start-up time is measured with, a seed capture of a few bulk TLS 1.3 connections
#   (.cache/bench/bulk.pcap from scripts/bench/make-bulk.sh) with their key log, and run.sh.
#
#   npm run build && scripts/bench/device-kit.sh [BUNDLE_SH] [SEED_FLOWS]
#     BUNDLE_SH   default ../shared/device/bundle.sh or ../../shared/device/bundle.sh (from the project root)
#     SEED_FLOWS  connections taken from .cache/bench/bulk.pcap, default 1 (~6.5 MB each)
#
# Everything lands in .device/ (git-ignored locally; ~33 MB with one seed flow), which the device
# tool carries. There, from the repository root:
#   bash .device/run.sh [COPIES] [WORKERS] [RUNS] [BUDGET_S]
#     COPIES    copies of every seed connection, each from its own client address (multiply.py):
#               default 200 (x 1 flow = 200 host pairs, ~1.3 GB)
#     WORKERS   default 1,2,4,8,16      RUNS  runs of each kind, alternated, default 2
#     BUDGET_S  wall-clock bound of the whole run, default 330: each step gets what is left
# It makes the capture (in /dev/shm when there is room, else /tmp), then runs, each part under
# `timeout`: bench/scaling.mjs (the shard split per N; `replay FILE` and `replay -` for each
# --workers N, alternated; the dispatcher's ceiling with engines that discard; N independent
# processes against `--workers N` for N = 2, 8 and the largest), then bench/run-workers.mjs when
# the kit has it. Every figure is printed in Gbps with its ratio to one engine. Output: on the
# terminal and in $OUT (or .device/out): device-run.txt (all of it), scaling.txt, run-workers.txt.
#
# Check it here before it travels (2 cores: few copies, small N):
#   OUT=/tmp/kit-out bash .device/run.sh 4 1,2 1 300
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BUNDLE=${1:-}
if [ -z "$BUNDLE" ]; then
  # ../shared beside a checkout; a worktree under <dir>/wt/NAME has it two levels up
  for b in ../shared/device/bundle.sh ../../shared/device/bundle.sh; do [ -f "$b" ] && BUNDLE=$b && break; done
fi
FLOWS=${2:-1}
[ -f dist/src/pipeline/fanout.js ] || { echo "run 'npm run build' first" >&2; exit 2; }
[ -f .cache/bench/bulk.pcap ] || { echo "missing .cache/bench/bulk.pcap: make it with sudo scripts/bench/make-bulk.sh bulk" >&2; exit 2; }
[ -n "$BUNDLE" ] && [ -f "$BUNDLE" ] || { echo "missing the device bundle script (../shared/device/bundle.sh): give its path" >&2; exit 2; }
# bundle.sh packs the checkout it runs in and edits its .git/info/exclude, which a git worktree
# does not have (.git is a file there): it runs in a scratch repository holding what it packs.
BUNDLE=$(cd "$(dirname "$BUNDLE")" && pwd)/$(basename "$BUNDLE")
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.device/' "$exclude" 2>/dev/null || echo '/.device/' >> "$exclude"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r package.json package-lock.json dist "$scratch/"
(cd "$scratch" && git init -q && bash "$BUNDLE" >/dev/null)
rm -rf .device && mv "$scratch/.device" .device
python3 .device/multiply.py pick .cache/bench/bulk.pcap "$FLOWS" .device/seed.pcap
cp .cache/bench/bulk.keys.log .device/seed.keys.log
benchfiles=(bench/scaling.mjs bench/lib fixtures/https/tls13-aes128gcm-h2/capture.pcap fixtures/https/tls13-aes128gcm-h2/keys.log)
[ -f bench/run-workers.mjs ] && benchfiles+=(bench/run-workers.mjs)
tar cJf .device/bench.tar.xz "${benchfiles[@]}"
cat > .device/run.sh <<'RUN'
#!/bin/bash
# Runs on the measuring machine (made by scripts/bench/device-kit.sh, which says how to call it).
set -uo pipefail
KIT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
COPIES=${1:-200}; WORKERS=${2:-1,2,4,8,16}; RUNS=${3:-2}; BUDGET=${4:-330}
T0=$SECONDS
# at least 5 s: `timeout 0` would mean no bound at all
left() { local s=$((BUDGET - (SECONDS - T0) - ${1:-0})); [ "$s" -lt 5 ] && s=5; echo "$s"; }
R=${OUT:-$KIT/out}
mkdir -p "$R"
say() { echo "[kit +$((SECONDS - T0))s] $*"; }
main() {
# the capture in memory when /dev/shm has room for it (~6.6 MB per copy and seed flow), else on disk
need_kb=$(( $(stat -c %s "$KIT/seed.pcap") / 1024 * (COPIES + 1) + 65536 ))
W=/tmp/tlsd-kit
[ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')" -gt "$need_kb" ] 2>/dev/null && W=/dev/shm/tlsd-kit
rm -rf "$W" && mkdir -p "$W/bin" || return 1
say "nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(awk '/^MemTotal:/ {printf "%.0f", $2 / 1048576}' /proc/meminfo) GiB; load: $(cut -d' ' -f1-3 /proc/loadavg); work dir $W"
xz -dc "$KIT/node.xz" > "$W/bin/node" && chmod +x "$W/bin/node" || { say "cannot unpack node"; return 1; }
tar xJf "$KIT/app.tar.xz" -C "$W" && tar xJf "$KIT/bench.tar.xz" -C "$W/app" || { say "cannot unpack the app"; return 1; }
export PATH=$W/bin:$PATH BENCH_QUIET_WAIT=${BENCH_QUIET_WAIT:-5}
say "node $(node --version); making the capture: $COPIES copies of $(basename "$KIT")/seed.pcap"
CAP=$W/scaling-$COPIES.pcap
timeout "$(left)" python3 "$KIT/multiply.py" copy "$KIT/seed.pcap" "$COPIES" "$CAP" || { say "multiply.py failed or ran out of time"; return 1; }
say "capture $CAP: $(stat -c %s "$CAP") bytes"
last=${WORKERS##*,}
indep=$(printf '%s\n' 2 8 "$last" | awk -F, -v w=",$WORKERS," 'index(w, "," $1 ",") && !seen[$1]++' | paste -sd, -)
# run-workers.mjs (when the kit has it) gets up to 40 % of what is left after the capture
reserve=0
[ -f "$W/app/bench/run-workers.mjs" ] && reserve=$(( $(left) * 2 / 5 ))
say "bench/scaling.mjs --workers $WORKERS --runs $RUNS --stdin --independent $indep (at most $(left "$reserve") s)"
timeout "$(left "$reserve")" node "$W/app/bench/scaling.mjs" --capture "$CAP" --keylog "$KIT/seed.keys.log" \
  --workers "$WORKERS" --runs "$RUNS" --stdin --independent "${indep:-$last}" --parts split,workers,ceiling,independent 2>&1 | tee "$R/scaling.txt"
say "scaling.mjs ended: exit ${PIPESTATUS[0]} (124: stopped at its time bound)"
# a replay it had started outlives it when it was stopped: end those (the kit's own path only)
pkill -f "$W/app/bench/lib/" 2>/dev/null
if [ -f "$W/app/bench/run-workers.mjs" ]; then
  say "bench/run-workers.mjs --workers $WORKERS --runs 1 (at most $(left) s)"
  (cd "$W/app" && timeout "$(left)" node bench/run-workers.mjs --capture "$CAP" --keylog "$KIT/seed.keys.log" --workers "$WORKERS" --runs 1) 2>&1 | tee "$R/run-workers.txt"
  say "run-workers.mjs ended: exit ${PIPESTATUS[0]} (124: stopped at its time bound)"
else
  say "no bench/run-workers.mjs in this kit: run --workers N not measured"
fi
rm -rf "$W"
say "done; results in $R"
}
main 2>&1 | tee -a "$R/device-run.txt"
RUN
chmod +x .device/run.sh
rm -f .device/run-scaling.sh
du -sh .device
ls -l .device
