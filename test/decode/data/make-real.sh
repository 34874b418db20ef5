#!/bin/sh
# Real kernel-encapsulated traffic for the decoder tests (run as root from the repo root:
#   sh test/decode/data/make-real.sh). Linux veth pair between two network namespaces carrying
#   plain IPv4 and VXLAN (id 42, UDP 4789) with IPv4 and IPv6 inside
# (this kernel has no 8021q, GRE, ERSPAN or IP-in-IP modules and no bridge VLAN filtering: those
# encapsulations are covered by synthetic frames checked against tshark, see make-synthetic.sh),
# and one curl GET to a Python http.server over each; tcpdump 4.99.3 on the underlay veth.
# tunnels-real.tshark.tsv is tshark 4.0.17's view of the innermost headers (the oracle).
set -eu
D=$(cd "$(dirname "$0")" && pwd)
A=tlsdecrypt-dec-a
B=tlsdecrypt-dec-b
T=$(mktemp -d /dev/shm/decdata.XXXXXX)
ip netns add $A
ip netns add $B
trap 'ip netns del $A; ip netns del $B; rm -rf $T' EXIT
ip link add a0 netns $A type veth peer name b0 netns $B
setup() { # ns dev-suffix underlay-ip n
  ip netns exec $1 sh -e -c "
    ip link set lo up; ip link set $2 up; ip addr add 192.168.100.$3/24 dev $2
    ip link add vx0 type vxlan id 42 remote 192.168.100.$4 local 192.168.100.$3 dstport 4789 dev $2
    ip link set vx0 up; ip addr add 10.42.0.$3/24 dev vx0; ip -6 addr add fd42::$3/64 dev vx0 nodad"
}
setup $A a0 1 2
setup $B b0 2 1
mkdir $T/www && echo hello > $T/www/index.html
ip netns exec $B python3 -m http.server 8080 --bind :: --directory $T/www >/dev/null 2>&1 &
SRV=$!
ip netns exec $A tcpdump -i a0 -s 0 -U -w $T/real.pcap 'not arp and not icmp6 and not (udp and not port 4789)' >/dev/null 2>&1 &
DUMP=$!
sleep 2
for U in http://192.168.100.2:8080/ http://10.42.0.2:8080/ 'http://[fd42::2]:8080/'; do
  ip netns exec $A curl -s -m 5 -o /dev/null "$U"
done
sleep 1
kill -INT $DUMP
wait $DUMP || true
kill $SRV
# Keep only TCP (the kernel also sends ICMPv6/ARP inside the tunnels).
tshark -r $T/real.pcap -Y tcp -w "$D/tunnels-real.pcap" -F pcap
tshark -r "$D/tunnels-real.pcap" -T fields -E separator=/t -E occurrence=l \
  -e ip.src -e ipv6.src -e ip.dst -e ipv6.dst -e tcp.srcport -e tcp.dstport -e tcp.seq_raw \
  -e tcp.ack_raw -e tcp.flags -e tcp.len -e vlan.id -e vxlan.vni \
  > "$D/tunnels-real.tshark.tsv"
