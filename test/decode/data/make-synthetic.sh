#!/bin/sh
# Synthetic frames for every encapsulation (frames.mjs, built with test/decode/builders.ts) and
# tshark 4.0.17's reading of them (synthetic.tshark.tsv: innermost source/destination as shown in
# the Source/Destination columns, TCP fields, all VLAN ids, the protocol stack). The decoder test
# compares its own reading with tshark's. Run from the repo root: sh test/decode/data/make-synthetic.sh
set -eu
D=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d)
trap 'rm -rf $T' EXIT
npx tsc --outDir $T --rootDir . --module nodenext --moduleResolution nodenext --target es2022 \
  --types node --skipLibCheck test/decode/builders.ts test/capture/helpers.ts
echo '{"type":"module"}' > $T/package.json
node "$D/frames.mjs" $T "$D/synthetic.pcapng"
tshark -r "$D/synthetic.pcapng" -T fields -E separator=/t -E occurrence=a -E aggregator=, \
  -e _ws.col.Source -e _ws.col.Destination -e tcp.srcport -e tcp.dstport -e tcp.seq_raw \
  -e tcp.ack_raw -e tcp.flags -e tcp.len -e ieee8021ad.id -e vlan.id -e frame.protocols \
  > "$D/synthetic.tshark.tsv"
