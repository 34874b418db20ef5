#!/usr/bin/env bash
# The capture bench/mirror.mjs replays as VXLAN: real TLS 1.3 traffic, 1,400-byte frames.
#
#   sudo bash bench/make-mirror-capture.sh [OUT_DIR]      (default .cache/bench)
#
# In the namespaces of test/mirror/netns.sh (prefix h13b): openssl s_server -WWW serves a 16 MiB
# file over a veth whose MTU is 1386, so full segments are 1,400-byte Ethernet frames; curl fetches
# it with SSLKEYLOGFILE; tcpdump on the server veth keeps the server's full-size frames
# (mirror-1400.pcap, the throughput feed); a second, small request is kept whole
# (mirror-session.pcap + mirror-session.keys.log, the latency feed). Checked: no lost segments.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/.cache/bench}
P=h13b
mkdir -p "$OUT"
W=$(mktemp -d /dev/shm/h13b-XXXXXX)
cleanup() {
  [ -n "${SRV:-}" ] && kill "$SRV" 2>/dev/null || true
  bash "$ROOT/test/mirror/netns.sh" down $P
  rm -rf "$W"
}
trap cleanup EXIT
bash "$ROOT/test/mirror/netns.sh" down $P
bash "$ROOT/test/mirror/netns.sh" up $P >/dev/null
ip netns exec ${P}srv ip link set ${P}s0 mtu 1386
ip netns exec ${P}cli ip link set ${P}c0 mtu 1386
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=h13b.test -days 2 -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null
mkdir "$W/www"
head -c $((16 << 20)) /dev/urandom >"$W/www/big.bin"
(cd "$W/www" && exec ip netns exec ${P}srv openssl s_server -accept 10.93.1.1:443 -cert "$W/cert.pem" -key "$W/key.pem" -WWW -quiet) &
SRV=$!
sleep 0.5
ip netns exec ${P}srv tcpdump --immediate-mode -U -n -i ${P}s0 -w "$W/all.pcap" 'tcp port 443' 2>"$W/tcpdump.err" &
TD=$!
sleep 1
ip netns exec ${P}cli env SSLKEYLOGFILE="$W/keys.log" curl -sk --limit-rate 20M -o /dev/null -w '%{http_code} %{size_download}\n' https://10.93.1.1/big.bin
sleep 0.5
kill -INT $TD
wait $TD || true
cat "$W/tcpdump.err" | tail -2
lost=$(tshark -r "$W/all.pcap" -Y tcp.analysis.lost_segment 2>/dev/null | wc -l)
[ "$lost" = 0 ] || { echo "capture lost $lost segments: run it again" >&2; exit 1; }
tcpdump -r "$W/all.pcap" -w "$OUT/mirror-1400.pcap" 'src host 10.93.1.1 and greater 1400 and less 1400' 2>/dev/null
# the latency feed: one small request, the whole connection
echo '<html>hello from h13b</html>' >"$W/www/small.html"
ip netns exec ${P}srv tcpdump --immediate-mode -U -n -i ${P}s0 -w "$OUT/mirror-session.pcap" 'tcp port 443' 2>"$W/tcpdump.err" &
TD=$!
sleep 1
ip netns exec ${P}cli env SSLKEYLOGFILE="$OUT/mirror-session.keys.log" curl -sk -o /dev/null -w '%{http_code} %{size_download}\n' https://10.93.1.1/small.html
sleep 0.5
kill -INT $TD
wait $TD || true
echo "$OUT/mirror-1400.pcap: $(tcpdump -r "$OUT/mirror-1400.pcap" 2>/dev/null | wc -l) frames of 1400 bytes"
echo "$OUT/mirror-session.pcap: $(tcpdump -r "$OUT/mirror-session.pcap" 2>/dev/null | wc -l) frames (one connection, keys in mirror-session.keys.log)"
