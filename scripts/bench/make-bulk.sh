#!/bin/bash
# Benchmark inputs made with real software (curl 7.88 / nginx 1.22, OpenSSL 3.0) in two network
# namespaces joined by a veth pair (MTU 1500, all offloads off, so packets are what a 1500-byte
# network carries), captured with tcpdump into /dev/shm and checked with tshark for lost segments.
#
#   sudo scripts/bench/make-bulk.sh            # both inputs (skips one whose files exist)
#   sudo scripts/bench/make-bulk.sh bulk       # only the bulk capture
#   sudo scripts/bench/make-bulk.sh sessions   # only the new-session capture
#   FORCE=1 ...                                # re-make even when present
#   BULK_NAME=bulk-large BULK_CONNS=120 CLIENT_ADDRS=120 ... bulk   # ~800 MB, for scaling runs
#
# Capture point: tcpdump runs on the SERVER's veth (-B 256 MiB, --immediate-mode). On the client's
# side, data segments the veth's receive backlog drops under load were missing from the capture
# (tshark lost_segment > 0); at the server's transmit tap every data segment is seen, and TCP's
# own retransmissions (if any) show up as such. Each capture is still checked: tcpdump "captured"
# must equal "received by filter", and tshark must report no lost_segment / ack_lost_segment.
#
# Outputs (.cache/bench/, git-ignored; never committed):
#   bulk.pcap + bulk.keys.log        TLS 1.3 TLS_AES_128_GCM_SHA256, HTTP/1.1: $BULK_CONNS curl
#                                    processes (one connection each, from $CLIENT_ADDRS client
#                                    addresses in turn) each downloading $BULK_MB MiB of random
#                                    bytes, $BULK_PAR at a time, each limited to $BULK_RATE/s;
#                                    >= 200 MB on the wire.
#   sessions.pcap + sessions.keys.log  $SESS_CONNS short connections, each a full handshake
#                                    (curl --no-sessionid, 'Connection: close'), half TLS 1.2
#                                    ECDHE-RSA-AES128-GCM-SHA256, half TLS 1.3 AES-128-GCM, one
#                                    GET of a 2 KB page each. SESS_NAME=sessions-16k
#                                    SESS_CONNS=16000 ... sessions makes the sustained-rate input
#                                    (5x longer, ~31 s of capture time).
#   nosni.pcap + nosni.keys.log      (`... nosni`) the shape of an internal service polled by a
#                                    script: $NOSNI_CONNS (3,000) full handshakes, half TLS 1.2
#                                    ECDHE-RSA-AES128-GCM-SHA256, half TLS 1.3 AES-128-GCM, curl -k
#                                    to https://SERVER-IP:8443/ (no SNI: an IP literal) served with a
#                                    self-signed certificate made on the spot; one GET each. Every
#                                    session raises three alerts (self-signed, missing SNI, numeric
#                                    host) when thresholding is off.
#   *.info.txt                       what was made, tshark loss check, packet/byte counts.
# Namespaces, veth names and addresses can be moved out of another user's way:
#   BENCH_NS=h15bench BENCH_VETH=h15b BENCH_NET=10.95.0 ... (defaults tdbench, tdb, 10.78.0)
# Needs root and the Debian packages tshark tcpdump nginx ethtool openssl curl iproute2.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${BENCH_CACHE:-$ROOT/.cache/bench}
PKI=$ROOT/fixtures/https/_pki
NSP=${BENCH_NS:-tdbench}
VETH=${BENCH_VETH:-tdb}
NET=${BENCH_NET:-10.78.0}
WORK=/dev/shm/$NSP
CNS=$NSP-cli
SNS=$NSP-srv
C4=$NET.1
S4=$NET.2
HOST=www.tlsdecrypt.test
CLIENT_ADDRS=${CLIENT_ADDRS:-40}   # client addresses $NET.10.. (many hosts: replay --workers shards by host pair)
BULK_NAME=${BULK_NAME:-bulk}   # output name: $BULK_NAME.pcap, $BULK_NAME.keys.log
BULK_CONNS=${BULK_CONNS:-40}
BULK_MB=${BULK_MB:-6}
BULK_PAR=${BULK_PAR:-2}
BULK_RATE=${BULK_RATE:-25M}   # per connection: tcpdump on a 2-core box drops packets at full speed
SESS_NAME=${SESS_NAME:-sessions}   # output name: $SESS_NAME.pcap, $SESS_NAME.keys.log
SESS_CONNS=${SESS_CONNS:-3200}
SESS_PAR=${SESS_PAR:-4}
NOSNI_CONNS=${NOSNI_CONNS:-3000}
ATTEMPTS=${ATTEMPTS:-4}
NGINX_PID=

log() { echo "[make-bulk $(date -u +%H:%M:%S)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for t in tshark tcpdump nginx ethtool openssl curl ip timeout; do
  command -v "$t" >/dev/null || die "missing tool $t"
done
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"
[ -f "$PKI/rsa.crt" ] || die "missing $PKI (run scripts/fixtures/make-https.sh once)"

net_down() {
  ip netns del "$CNS" 2>/dev/null || true
  ip netns del "$SNS" 2>/dev/null || true
}
cleanup() {
  if [ -n "$NGINX_PID" ]; then kill -QUIT "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true; fi
  net_down
}
trap cleanup EXIT

net_up() {
  net_down
  ip netns add "$CNS"; ip netns add "$SNS"
  ip link add ${VETH}c type veth peer name ${VETH}s
  ip link set ${VETH}c netns "$CNS"; ip link set ${VETH}s netns "$SNS"
  local ns dev a mac
  for ns in "$CNS" "$SNS"; do
    if [ "$ns" = "$CNS" ]; then dev=${VETH}c a=$C4 mac=02:78:00:00:00:01; else dev=${VETH}s a=$S4 mac=02:78:00:00:00:02; fi
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip link set "$dev" address "$mac"
    ip netns exec "$ns" ip link set "$dev" mtu 1500
    ip netns exec "$ns" ip addr add "$a/24" dev "$dev"
    ip netns exec "$ns" ethtool -K "$dev" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
    ip netns exec "$ns" ip link set "$dev" up
  done
  ip netns exec "$CNS" ip neigh replace "$S4" lladdr 02:78:00:00:00:02 dev ${VETH}c nud permanent
  ip netns exec "$SNS" ip neigh replace "$C4" lladdr 02:78:00:00:00:01 dev ${VETH}s nud permanent
  local i
  for i in $(seq 0 $((CLIENT_ADDRS - 1))); do
    ip netns exec "$CNS" ip addr add "$NET.$((10 + i))/24" dev ${VETH}c
    ip netns exec "$SNS" ip neigh replace "$NET.$((10 + i))" lladdr 02:78:00:00:00:01 dev ${VETH}s nud permanent
  done
  # many short connections from one client address: allow quick port reuse
  ip netns exec "$CNS" sysctl -qw net.ipv4.ip_local_port_range="10000 65000" || true
  ip netns exec "$CNS" sysctl -qw net.ipv4.tcp_tw_reuse=1 || true
}

make_www() {
  mkdir -p "$WORK/www"
  head -c $((BULK_MB * 1024 * 1024)) /dev/urandom > "$WORK/www/bulk.bin"
  /usr/bin/python3 -c "
import random; r=random.Random(7); w='tls record decrypt stream capture packet session secret'.split()
s='<!DOCTYPE html><html><body>'
while len(s)<2000: s+='<p>'+' '.join(r.choice(w) for _ in range(20))+'</p>\n'
open('$WORK/www/index.html','w').write(s+'</body></html>\n')"
  # self-signed certificate for the nosni server (port 8443), named by the server's address only
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$S4" -keyout "$WORK/self.key" -out "$WORK/self.crt" 2>/dev/null
  chmod -R a+rX "$WORK"
}

start_nginx() {
  local p=$WORK/nginx
  rm -rf "$p"; mkdir -p "$p/tmp" "$p/logs"
  cat > "$p/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $p/nginx.pid;
error_log $p/logs/error.log warn;
events { worker_connections 256; }
http {
  access_log $p/logs/access.log;
  client_body_temp_path $p/tmp/body; proxy_temp_path $p/tmp/proxy; fastcgi_temp_path $p/tmp/fcgi;
  uwsgi_temp_path $p/tmp/uwsgi; scgi_temp_path $p/tmp/scgi;
  types { text/html html; application/octet-stream bin; }
  server_tokens off;
  server {
    listen $S4:443 ssl http2;
    server_name $HOST;
    root $WORK/www;
    ssl_certificate $PKI/rsa.crt; ssl_certificate_key $PKI/rsa.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache off; ssl_session_tickets off;
  }
  server {
    listen $S4:8443 ssl;
    root $WORK/www;
    ssl_certificate $WORK/self.crt; ssl_certificate_key $WORK/self.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache off; ssl_session_tickets off;
  }
}
EOF
  ip netns exec "$SNS" nginx -p "$p" -c "$p/nginx.conf" 2>"$p/logs/stderr.log" &
  NGINX_PID=$!
  for _ in $(seq 1 50); do
    ip netns exec "$SNS" ss -ltn 2>/dev/null | grep -q ":8443 " && return 0
    sleep 0.1
  done
  die "nginx did not listen"
}

# capture NAME SCRIPT : runs SCRIPT (bash, cwd $WORK/run, client namespace) under tcpdump; loss check
capture() {
  local name=$1 script=$2 attempt tp lost got recv
  for attempt in $(seq 1 "$ATTEMPTS"); do
    rm -rf "$WORK/run" "$WORK/cap.pcap"; mkdir -p "$WORK/run"
    cp "$PKI/ca.crt" "$WORK/run/"
    : > "$WORK/nginx/logs/access.log"
    ip netns exec "$SNS" tcpdump --immediate-mode -B ${TCPDUMP_B:-262144} -i ${VETH}s -s 0 -w "$WORK/cap.pcap" tcp 2>"$WORK/tcpdump.log" &
    tp=$!
    sleep 1
    local t0=$SECONDS
    ( cd "$WORK/run" && ip netns exec "$CNS" timeout 600 bash -c "$script" ) || log "client exited with $?"
    local dt=$((SECONDS - t0))
    sleep 1.5
    kill -INT "$tp"; wait "$tp" 2>/dev/null || true
    got=$(sed -n 's/^\([0-9]*\) packets\{0,1\} captured.*/\1/p' "$WORK/tcpdump.log")
    recv=$(sed -n 's/^\([0-9]*\) packets\{0,1\} received by filter.*/\1/p' "$WORK/tcpdump.log")
    lost=$(tshark -r "$WORK/cap.pcap" -Y 'tcp.analysis.lost_segment || tcp.analysis.ack_lost_segment' 2>/dev/null | wc -l)
    local ok200
    ok200=$(grep -c '" 200 ' "$WORK/nginx/logs/access.log" || true)
    log "$name attempt $attempt: ${dt}s, tcpdump captured $got of $recv, lost segments $lost, nginx 200s $ok200"
    if [ "$lost" = 0 ] && [ "$got" = "$recv" ] && [ -s "$WORK/cap.pcap" ]; then
      cat "$WORK"/run/keys*.log > "$OUT/$name.keys.log"
      mv "$WORK/cap.pcap" "$OUT/$name.pcap"
      {
        echo "made $(date -u +%FT%TZ) by scripts/bench/make-bulk.sh on $(hostname) ($(nproc) cores)"
        echo "client: curl $(curl --version | head -1 | awk '{print $2}'), server: nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), $(openssl version)"
        echo "client script: $script"
        echo "tcpdump: captured $got, received by filter $recv; tshark lost_segment/ack_lost_segment: $lost"
        echo "nginx 200 responses: $ok200; capture wall time ${dt}s"
        capinfos -c -d -u "$OUT/$name.pcap" 2>/dev/null | sed 1d || true
        echo "key log lines: $(wc -l < "$OUT/$name.keys.log")"
      } > "$OUT/$name.info.txt"
      cat "$OUT/$name.info.txt" >&2
      return 0
    fi
    sleep 3
  done
  die "$name: capture kept losing packets"
}

CURL="curl -sS --cacert ca.crt --resolve $HOST:443:$S4 -o /dev/null"

make_bulk() {
  # one curl process per connection (no reuse), $BULK_PAR in flight
  # connection i comes from client address 10.78.0.(10 + i % CLIENT_ADDRS)
  local s="seq 1 $BULK_CONNS | xargs -P $BULK_PAR -I{} sh -c 'SSLKEYLOGFILE=\$PWD/keys{}.log exec $CURL --interface $NET.\$((10 + {} % $CLIENT_ADDRS)) --http1.1 --tlsv1.3 --tls13-ciphers TLS_AES_128_GCM_SHA256 --limit-rate $BULK_RATE \"https://$HOST/bulk.bin?c={}\"'"
  capture "$BULK_NAME" "$s"
}

make_sessions() {
  # $SESS_PAR curl processes, each fetching its URLs over fresh connections with full handshakes:
  # 'Connection: close' makes nginx close after each response; --no-sessionid stops curl resuming.
  local per=$((SESS_CONNS / SESS_PAR)) i s="" v
  for i in $(seq 1 "$SESS_PAR"); do
    if [ $((i % 2)) = 0 ]; then v="--tlsv1.2 --tls-max 1.2 --ciphers ECDHE-RSA-AES128-GCM-SHA256"; else v="--tlsv1.3 --tls13-ciphers TLS_AES_128_GCM_SHA256"; fi
    s+="SSLKEYLOGFILE=\$PWD/keys$i.log $CURL --no-sessionid -H 'Connection: close' --http1.1 $v 'https://$HOST/index.html?p=$i&n=[1-$per]' >/dev/null & "
  done
  s+="wait"
  capture "$SESS_NAME" "$s"
}

make_nosni() {
  # like make_sessions, but curl -k to the server's IP address (no SNI) on 8443 (self-signed)
  local per=$((NOSNI_CONNS / SESS_PAR)) i s="" v
  for i in $(seq 1 "$SESS_PAR"); do
    if [ $((i % 2)) = 0 ]; then v="--tlsv1.2 --tls-max 1.2 --ciphers ECDHE-RSA-AES128-GCM-SHA256"; else v="--tlsv1.3 --tls13-ciphers TLS_AES_128_GCM_SHA256"; fi
    s+="SSLKEYLOGFILE=\$PWD/keys$i.log curl -sS -k -o /dev/null --no-sessionid -H 'Connection: close' --http1.1 $v 'https://$S4:8443/index.html?p=$i&n=[1-$per]' >/dev/null & "
  done
  s+="wait"
  capture nosni "$s"
}

mkdir -p "$OUT"
what=${1:-all}
net_up
make_www
start_nginx
if [ "$what" = all ] || [ "$what" = bulk ]; then
  if [ -z "${FORCE:-}" ] && [ -s "$OUT/$BULK_NAME.pcap" ]; then log "$BULK_NAME.pcap exists (FORCE=1 to re-make)"; else make_bulk; fi
fi
if [ "$what" = all ] || [ "$what" = sessions ]; then
  if [ -z "${FORCE:-}" ] && [ -s "$OUT/$SESS_NAME.pcap" ]; then log "$SESS_NAME.pcap exists (FORCE=1 to re-make)"; else make_sessions; fi
fi
if [ "$what" = nosni ]; then
  if [ -z "${FORCE:-}" ] && [ -s "$OUT/nosni.pcap" ]; then log "nosni.pcap exists (FORCE=1 to re-make)"; else make_nosni; fi
fi
rm -rf "$WORK"
log "done: $(ls -l "$OUT" | tail -n +2 | awk '{print $NF" "$5}' | tr '\n' ' ')"
