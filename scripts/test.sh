#!/usr/bin/env bash
# Set up (with the dev extra) and run the whole test suite. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=dev bash scripts/setup.sh

# The Prometheus tests run the real server (Debian's `prometheus` package, with promtool).
# Install it where we can (root with apt-get); elsewhere those tests skip and say why.
install_prometheus() {
  local guard="" rc=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then  # keep the package from starting a daemon; tests run their own
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends prometheus \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; } || rc=$?
  [ -z "$guard" ] || rm -f /usr/sbin/policy-rc.d
  return "$rc"
}
if ! { command -v prometheus && command -v promtool; } >/dev/null 2>&1 \
   && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing prometheus (Debian package) for the Prometheus tests"
  install_prometheus >/dev/null 2>&1 || echo "    (could not install it: the Prometheus server tests will skip)"
fi

exec .venv/bin/python -m pytest "$@"
