#!/usr/bin/env bash
# Installs what the test suite needs beyond node_modules, so `npm test` works on a fresh machine:
#   - Debian's chromium, for the status-page and log-view tests in a real headless browser;
#   - script (bsdutils) and python3, for the CLI progress and control-character tests;
#   - java + maven are expected from the machine image; Kafka itself is fetched by scripts/kafka.sh.
# Idempotent and quiet when everything is present.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
# script(1) gives the progress-line test a pseudo-terminal; python3 checks events with str.splitlines()
command -v script >/dev/null 2>&1 || need+=(bsdutils)
command -v python3 >/dev/null 2>&1 || need+=(python3)
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
