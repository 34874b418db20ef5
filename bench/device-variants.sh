#!/bin/bash
# Kept with the 16-core figures it made (bench/RESULTS.md, "16 cores"): copy it into the .device/ kit
# of scripts/bench/device-kit.sh and run it there as `bash .device/v2.sh` (variants of replay --workers 8/16).
set -u
KIT=$(cd "$(dirname "$0")" && pwd); W=/dev/shm/k; mkdir -p $W/bin; R=${OUT:-/tmp/out}; mkdir -p $R
xz -dc $KIT/node.xz > $W/bin/node && chmod +x $W/bin/node; tar xJf $KIT/app.tar.xz -C $W
python3 $KIT/multiply.py copy $KIT/seed.pcap 500 $W/cap.pcap
F=$W/app/dist/src/pipeline/fanout.js; cp $F $F.orig
run() { local s=$EPOCHREALTIME; /usr/bin/time -f "%U %S" -o $W/t timeout 60 $W/bin/node $1 $W/app/dist/src/cli.js replay $W/cap.pcap --keylog $KIT/seed.keys.log --workers $2 >/dev/null 2>$W/err; local rc=$?; local e=$EPOCHREALTIME
  echo "$3 flags='$1' workers=$2 rc=$rc wall=$(awk -v a=$s -v b=$e 'BEGIN{printf "%.3f", b-a}') cpu(user sys)=$(cat $W/t) $(tail -1 $W/err | cut -c1-60)"; }
for rep in 1 2; do
 cp $F.orig $F; run "" 1 base; run "" 8 base; run "" 16 base
 run "--max-semi-space-size=64" 8 semi64; run "--max-semi-space-size=64" 16 semi64
 sed 's/2 \* this.size/16 * this.size/' $F.orig > $F; run "" 8 ring16x; run "" 16 ring16x
 cp $F.orig $F; MALLOC_ARENA_MAX=2 run "" 16 arena2
done 2>&1 | tee $R/v2.txt
