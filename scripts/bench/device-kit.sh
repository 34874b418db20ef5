#!/bin/bash
# A kit to measure `replay --workers N` scaling on a bigger machine that has python3 but no Node
# (the 16-core device machine): ../shared/device/bundle.sh's node binary and app, plus what the
# scaling bench needs (bench/, the small fixture it times start-up with), a seed capture of a few
# bulk connections with their key log, and run-scaling.sh to run there.
#
#   npm run build && scripts/bench/device-kit.sh [BUNDLE_SH] [SEED_FLOWS]
#     BUNDLE_SH   default ../shared/device/bundle.sh (relative to the project root)
#     SEED_FLOWS  connections taken from .cache/bench/bulk.pcap (scripts/bench/make-bulk.sh), default 4
#
# Everything lands in .device/ (git-ignored locally by bundle.sh; ~26 MB + ~6 MB per seed flow).
# On the machine, from the directory holding .device/:
#   bash .device/run-scaling.sh [COPIES] [WORKERS] [RUNS] > scaling.txt
# which unpacks into /tmp, makes the capture (COPIES copies of every seed connection, each from a
# new client address: COPIES x SEED_FLOWS connections, default 60 x 4 = 240, ~1.5 GB) and runs
# bench/scaling.mjs --workers WORKERS (default 1,2,4,8,16).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BUNDLE=${1:-../shared/device/bundle.sh}
FLOWS=${2:-4}
[ -f dist/src/pipeline/fanout.js ] || { echo "run 'npm run build' first" >&2; exit 2; }
[ -f .cache/bench/bulk.pcap ] || { echo "missing .cache/bench/bulk.pcap: make it with sudo scripts/bench/make-bulk.sh bulk" >&2; exit 2; }
[ -f "$BUNDLE" ] || { echo "missing $BUNDLE" >&2; exit 2; }
bash "$BUNDLE"
python3 .device/multiply.py pick .cache/bench/bulk.pcap "$FLOWS" .device/seed.pcap
cp .cache/bench/bulk.keys.log .device/seed.keys.log
tar cJf .device/bench.tar.xz bench/scaling.mjs bench/lib fixtures/https/tls13-aes128gcm-h2/capture.pcap fixtures/https/tls13-aes128gcm-h2/keys.log
cat > .device/run-scaling.sh <<'RUN'
#!/bin/bash
# Runs on the measuring machine (see scripts/bench/device-kit.sh).
set -euo pipefail
KIT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
COPIES=${1:-60}; WORKERS=${2:-1,2,4,8,16}; RUNS=${3:-3}
xz -dc "$KIT/node.xz" > /tmp/node && chmod +x /tmp/node
rm -rf /tmp/app && tar xJf "$KIT/app.tar.xz" -C /tmp && tar xJf "$KIT/bench.tar.xz" -C /tmp/app
[ -f /tmp/scaling.pcap ] || python3 "$KIT/multiply.py" copy "$KIT/seed.pcap" "$COPIES" /tmp/scaling.pcap
export PATH=/tmp:$PATH BENCH_QUIET_WAIT=${BENCH_QUIET_WAIT:-10}
nproc; ls -l /tmp/scaling.pcap
node /tmp/app/bench/scaling.mjs --capture /tmp/scaling.pcap --keylog "$KIT/seed.keys.log" --workers "$WORKERS" --runs "$RUNS"
RUN
chmod +x .device/run-scaling.sh
du -sh .device
