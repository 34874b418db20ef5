# per-thread CPU of a threaded receiver: $1 = extra args, $2 = Mbps
cd /work/wt/i13
bash test/mirror/netns.sh down h13b >/dev/null 2>&1; bash test/mirror/netns.sh up h13b >/dev/null
node dist/src/cli.js publish mirror --listen 10.93.2.2:4789 --brokers 127.0.0.1:19092 --topic h13b.split.$RANDOM --rcvbuf 33554432 $1 > /tmp/i13/split.out 2>&1 & P=$!
for i in $(seq 100); do grep -q listening /tmp/i13/split.out && break; sleep 0.2; done
sleep 1
snap() { for t in /proc/$P/task/*; do echo "$(basename $t) $(cat $t/comm) $(awk '{print $14+$15}' $t/stat)"; done; }
snap > /tmp/i13/s0
ip netns exec h13bsrv .cache/bench/vxlan-send .cache/bench/mirror-1400.pcap 10.93.2.2 4789 $2 4 42 10.93.2.1
sleep 1
snap > /tmp/i13/s1
join /tmp/i13/s0 /tmp/i13/s1 | awk '{d=$5-$3; if (d>0) print $2, $1, d/100 " s"}'
kill $P; wait $P; tail -1 /tmp/i13/split.out
bash test/mirror/netns.sh down h13b
