#!/usr/bin/env bash
# Set everything up, then train the quickstart GNN on the embedded synthetic dataset.
# Extra arguments are config overrides, e.g.: bash scripts/quickstart.sh train.epochs=3
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/streamguard train --preset quickstart "$@"
