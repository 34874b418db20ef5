#!/bin/bash
# Kept with the 16-core figures it made (bench/RESULTS.md, "16 cores"): copy it into the .device/ kit
# that scripts/bench/device-kit.sh makes, and run it there as `bash .device/flags.sh [COPIES]`
# (node flags x --workers 1, 8, 16 on COPIES copies of the kit's seed connection, ~6.7 MB each).
# V8 platform threads vs engine threads: replay --workers N with node flags, bigger capture
set -u
KIT=$(cd "$(dirname "$0")" && pwd); W=/dev/shm/k; mkdir -p $W/bin; R=${OUT:-/tmp/out}; mkdir -p $R
xz -dc $KIT/node.xz > $W/bin/node && chmod +x $W/bin/node; tar xJf $KIT/app.tar.xz -C $W
C=${1:-500}; python3 $KIT/multiply.py copy $KIT/seed.pcap $C $W/cap.pcap; ls -la $W/cap.pcap
run() { # flags workers
  local s=$EPOCHREALTIME; timeout 60 $W/bin/node $1 $W/app/dist/src/cli.js replay $W/cap.pcap --keylog $KIT/seed.keys.log --workers $2 >/dev/null 2>$W/err; local rc=$?
  local e=$EPOCHREALTIME; echo "flags='$1' workers=$2 rc=$rc wall=$(awk -v a=$s -v b=$e "BEGIN{printf \"%.3f\", b-a}") $(tail -1 $W/err | cut -c1-90)"; }
for rep in 1 2; do for f in "" "--single-threaded" "--v8-pool-size=16" "--v8-pool-size=32"; do for n in 1 8 16; do
  [ $n = 1 ] && [ $rep = 2 ] && [ "$f" != "" ] && continue
  run "$f" $n; done; done; done 2>&1 | tee $R/flags.txt
tar xJf $KIT/bench.tar.xz -C $W/app
for f in "" "--single-threaded" "--v8-pool-size=16"; do echo "run-workers flags='$f'"; (cd $W/app && timeout 60 $W/bin/node $f bench/run-workers.mjs --capture $W/cap.pcap --keylog $KIT/seed.keys.log --workers 1,8,16 --runs 1 2>&1 | grep -E '^  run|^\|') ; done 2>&1 | tee $R/rw.txt
