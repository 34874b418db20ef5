#!/bin/sh
# Makes the small real captures under test/capture/data (run as root from the repo root:
#   sh test/capture/data/make.sh). Tools: tcpdump 4.99.3 / libpcap 1.10.3, curl 7.88,
# Python 3 http.server, editcap and tshark 4.0.17 (Debian 12).
#
# - lo-http.pcap:        tcpdump -i lo (Ethernet, microsecond pcap) of one curl GET to a local
#                        Python http.server (IPv4), then one over IPv6 (::1).
# - any-http.pcap:       the same taken with tcpdump -i any (LINUX_SLL2).
# - lo-http.ns.pcap:     editcap -F nseclibpcap of lo-http.pcap (nanosecond pcap).
# - lo-http.pcapng:      editcap -F pcapng of lo-http.pcap.
# - lo-http.dsb.pcapng:  editcap --inject-secrets tls,keys.log (a Decryption Secrets Block).
# - *.tshark.tsv:        tshark's view of every frame (the oracle the tests compare against).
set -eu
D=$(cd "$(dirname "$0")" && pwd)
NS=tlsdecrypt-capture-data
T=$(mktemp -d /dev/shm/capdata.XXXXXX)
ip netns add $NS
trap 'ip netns del $NS; rm -rf $T' EXIT
ip netns exec $NS ip link set lo up
mkdir $T/www && echo hello > $T/www/index.html
ip netns exec $NS python3 -m http.server 8080 --bind :: --directory $T/www >/dev/null 2>&1 &
SRV=$!
sleep 1
for IF in lo any; do
  ip netns exec $NS tcpdump -i $IF -s 0 -U -w $T/$IF.pcap 'tcp port 8080' >/dev/null 2>&1 &
  DUMP=$!
  sleep 1
  ip netns exec $NS curl -s -o /dev/null http://127.0.0.1:8080/
  ip netns exec $NS curl -s -o /dev/null 'http://[::1]:8080/'
  sleep 1
  kill -INT $DUMP
  wait $DUMP || true
done
kill $SRV
cp $T/lo.pcap "$D/lo-http.pcap"
cp $T/any.pcap "$D/any-http.pcap"
editcap -F nseclibpcap "$D/lo-http.pcap" "$D/lo-http.ns.pcap"
editcap -F pcapng "$D/lo-http.pcap" "$D/lo-http.pcapng"
printf 'CLIENT_RANDOM 0000000000000000000000000000000000000000000000000000000000000000 %s\n' \
  000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f \
  > "$D/keys.log"
editcap --inject-secrets "tls,$D/keys.log" "$D/lo-http.pcap" "$D/lo-http.dsb.pcapng"
for F in lo-http any-http; do
  tshark -r "$D/$F.pcap" -T fields -E separator=/t \
    -e frame.time_epoch -e frame.len -e frame.cap_len -e ip.src -e ipv6.src -e ip.dst -e ipv6.dst \
    -e tcp.srcport -e tcp.dstport -e tcp.seq_raw -e tcp.ack_raw -e tcp.flags -e tcp.len \
    > "$D/$F.tshark.tsv"
done
