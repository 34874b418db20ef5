#!/bin/bash
# A kit to measure `replay --workers N` scaling on a bigger machine that has python3 but no Node
# (the 16-core device machine): ../shared/device/bundle.sh's node binary and app, plus what the
# scaling bench needs (bench/, the small fixture it times start-up with), a seed capture of a few
# bulk connections with their key log, and run-scaling.sh to run there.
#
#   npm run build && scripts/bench/device-kit.sh [BUNDLE_SH] [SEED_FLOWS]
#     BUNDLE_SH   default ../shared/device/bundle.sh or ../../shared/device/bundle.sh (from the project root)
#     SEED_FLOWS  connections taken from .cache/bench/bulk.pcap (scripts/bench/make-bulk.sh), default 4
#
# Everything lands in .device/ (git-ignored locally by bundle.sh; ~26 MB + ~6 MB per seed flow).
# On the machine, from the directory holding .device/:
#   bash .device/run-scaling.sh [COPIES] [WORKERS] [RUNS] > scaling.txt
# which unpacks into /tmp (KIT_WORK), makes the capture (COPIES copies of every seed connection, each from a
# new client address: COPIES x SEED_FLOWS connections, default 60 x 4 = 240, ~1.5 GB) and runs
# bench/scaling.mjs --workers WORKERS (default 1,2,4,8,16).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BUNDLE=${1:-}
if [ -z "$BUNDLE" ]; then
  # ../shared beside a checkout; a worktree under <dir>/wt/NAME has it two levels up
  for b in ../shared/device/bundle.sh ../../shared/device/bundle.sh; do [ -f "$b" ] && BUNDLE=$b && break; done
fi
FLOWS=${2:-4}
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
(cd "$scratch" && git init -q && bash "$BUNDLE")
rm -rf .device && mv "$scratch/.device" .device
python3 .device/multiply.py pick .cache/bench/bulk.pcap "$FLOWS" .device/seed.pcap
cp .cache/bench/bulk.keys.log .device/seed.keys.log
tar cJf .device/bench.tar.xz bench/scaling.mjs bench/lib fixtures/https/tls13-aes128gcm-h2/capture.pcap fixtures/https/tls13-aes128gcm-h2/keys.log
cat > .device/run-scaling.sh <<'RUN'
#!/bin/bash
# Runs on the measuring machine (see scripts/bench/device-kit.sh). KIT_WORK: where to unpack
# (default /tmp; the capture made there is kept for the next call).
set -euo pipefail
KIT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
COPIES=${1:-60}; WORKERS=${2:-1,2,4,8,16}; RUNS=${3:-3}
W=${KIT_WORK:-/tmp}
mkdir -p "$W/bin"
xz -dc "$KIT/node.xz" > "$W/bin/node" && chmod +x "$W/bin/node"
rm -rf "$W/app" && tar xJf "$KIT/app.tar.xz" -C "$W" && tar xJf "$KIT/bench.tar.xz" -C "$W/app"
[ -f "$W/scaling-$COPIES.pcap" ] || python3 "$KIT/multiply.py" copy "$KIT/seed.pcap" "$COPIES" "$W/scaling-$COPIES.pcap"
export PATH=$W/bin:$PATH BENCH_QUIET_WAIT=${BENCH_QUIET_WAIT:-10}
echo "nproc $(nproc); capture $(stat -c %s "$W/scaling-$COPIES.pcap") bytes"
node "$W/app/bench/scaling.mjs" --capture "$W/scaling-$COPIES.pcap" --keylog "$KIT/seed.keys.log" --workers "$WORKERS" --runs "$RUNS"
RUN
chmod +x .device/run-scaling.sh
du -sh .device
