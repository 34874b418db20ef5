#!/usr/bin/env bash
# Network namespaces for the mirror receiver test (test/mirror/mirror-netns.test.ts).
#
#   PFX-cli  [PFX-c0 10.93.1.2, fd93::2] ──veth── [PFX-s0 10.93.1.1, fd93::1]  PFX-srv (HTTPS server)
#                                                    │ tc clsact ingress+egress: u32 match-all,
#                                                    │ action mirred egress mirror dev PFX-vx / PFX-gv
#   root ns  [PFX-u1 10.93.2.2] ──veth (mtu 9000)── [PFX-u0 10.93.2.1]  PFX-srv
#            the receiver listens on 10.93.2.2:4789 (VXLAN) and :6081 (Geneve)
#
#   netns.sh up PFX        creates all of it (prints "geneve=kernel" or "geneve=none" last)
#   netns.sh mirror PFX DEV  points the server veth's mirror at DEV (vx, gv or none)
#   netns.sh down PFX      deletes it
set -euo pipefail
cmd=$1
P=${2:-h13}
S=${P}srv
C=${P}cli
srv() { ip netns exec "$S" "$@"; }

case "$cmd" in
up)
  ip netns add "$S"
  ip netns add "$C"
  ip netns exec "$S" ip link set lo up
  ip netns exec "$C" ip link set lo up
  ip link add "${P}s0" type veth peer name "${P}c0"
  ip link set "${P}s0" netns "$S"
  ip link set "${P}c0" netns "$C"
  srv ip addr add 10.93.1.1/24 dev "${P}s0"
  srv ip addr add fd93::1/64 dev "${P}s0" nodad
  ip netns exec "$C" ip addr add 10.93.1.2/24 dev "${P}c0"
  ip netns exec "$C" ip addr add fd93::2/64 dev "${P}c0" nodad
  srv ip link set "${P}s0" up
  ip netns exec "$C" ip link set "${P}c0" up
  # no offloads: the mirror carries wire-sized frames, as a cloud mirror session would
  srv ethtool -K "${P}s0" tso off gso off gro off >/dev/null 2>&1 || true
  ip netns exec "$C" ethtool -K "${P}c0" tso off gso off gro off >/dev/null 2>&1 || true
  # underlay to the receiver in the root namespace
  ip link add "${P}u0" type veth peer name "${P}u1"
  ip link set "${P}u0" netns "$S"
  ip link set "${P}u1" mtu 9000 up
  ip addr add 10.93.2.2/24 dev "${P}u1"
  srv ip link set "${P}u0" mtu 9000 up
  srv ip addr add 10.93.2.1/24 dev "${P}u0"
  srv ip link add "${P}vx" type vxlan id 42 remote 10.93.2.2 local 10.93.2.1 dstport 4789 dev "${P}u0"
  srv ip link set "${P}vx" mtu 8900 up
  geneve=none
  if srv ip link add "${P}gv" type geneve id 43 remote 10.93.2.2 2>/dev/null; then
    srv ip link set "${P}gv" mtu 8900 up
    geneve=kernel
  fi
  srv tc qdisc add dev "${P}s0" clsact
  echo "geneve=$geneve"
  ;;
mirror)
  dev=$3
  srv tc filter del dev "${P}s0" ingress 2>/dev/null || true
  srv tc filter del dev "${P}s0" egress 2>/dev/null || true
  if [ "$dev" != none ]; then
    for dir in ingress egress; do
      srv tc filter add dev "${P}s0" "$dir" protocol all u32 match u32 0 0 action mirred egress mirror dev "${P}${dev}"
    done
  fi
  ;;
down)
  ip netns del "$S" 2>/dev/null || true
  ip netns del "$C" 2>/dev/null || true
  ip link del "${P}u1" 2>/dev/null || true
  ;;
*)
  echo "usage: netns.sh up|mirror|down PFX [DEV]" >&2
  exit 2
  ;;
esac
