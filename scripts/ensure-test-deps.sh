#!/usr/bin/env bash
# Installs what the test suite needs beyond node_modules, so `npm test` works on a fresh machine:
#   - Debian's chromium, for the status-page and log-view tests in a real headless browser;
#   - script (bsdutils) and python3, for the CLI progress and control-character tests;
#   - as root: iproute2, tcpdump, curl, openssl for the mirror receiver's network-namespace test;
#   - java + maven are expected from the machine image; Kafka itself is fetched by scripts/kafka.sh.
# Idempotent and quiet when everything is present.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
# script(1) gives the progress-line test a pseudo-terminal; python3 checks events with str.splitlines()
command -v script >/dev/null 2>&1 || need+=(bsdutils)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# test/mirror (network namespaces, as root): kernel mirroring into VXLAN, tcpdump pipe, curl + openssl s_server
if [ "$(id -u)" = 0 ]; then
  command -v ip >/dev/null 2>&1 || need+=(iproute2)
  command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  command -v dumpcap >/dev/null 2>&1 || need+=(wireshark-common)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-test-deps: missing ${need[*]}; install them (Debian: apt-get install -y ${need[*]})" >&2
    exit 1
  fi
  echo "ensure-test-deps: installing ${need[*]} from Debian" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
for t in java mvn; do
  command -v "$t" >/dev/null 2>&1 || { echo "ensure-test-deps: '$t' is missing (the Kafka integration tests need a JDK 17+ and Maven)" >&2; exit 1; }
done
