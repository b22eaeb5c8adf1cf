#!/usr/bin/env bash
# Set up (with the dev extra) and run the whole test suite. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=dev bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
