#!/usr/bin/env bash
# Create .venv and install StreamGuard. Idempotent: a second run only checks.
#   EXTRAS=dev (default "all")   which extras to install
#   PYTHON=python3.11            interpreter to build the venv with
# torch is installed FIRST and pinned: from the PyTorch CPU index on machines without an
# NVIDIA GPU (a local CPU wheel in pip's find-links works too), from PyPI's CUDA build on
# GPU machines. The project's torch range is then already satisfied, so nothing pulls CUDA
# wheels onto a CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=${EXTRAS:-all}
TORCH_SPEC="torch==2.13.0"
CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "error: StreamGuard needs Python 3.11 (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check)

if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "==> installing $TORCH_SPEC (CUDA build)"
    "${PIP[@]}" install -q "$TORCH_SPEC"
  else
    echo "==> installing $TORCH_SPEC (CPU build)"
    # Ask the CPU index only when it answers; otherwise pip's configured sources must
    # hold a CPU wheel (a local wheel in find-links, as on air-gapped build machines).
    if "$PYTHON" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)" "$CPU_INDEX/torch/" 2>/dev/null; then
      "${PIP[@]}" install -q "$TORCH_SPEC+cpu" --extra-index-url "$CPU_INDEX"
    else
      echo "    ($CPU_INDEX not reachable: using pip's configured sources)"
      # The +cpu local version only matches CPU wheels, so this fails fast rather than
      # downloading PyPI's CUDA build.
      "${PIP[@]}" install -q "$TORCH_SPEC+cpu"
    fi
    .venv/bin/python -W ignore -c 'import sys, torch; sys.exit(torch.version.cuda is not None)' || {
      echo "error: a CUDA build of torch was installed on a machine without a GPU; set TORCH_CPU_INDEX to a reachable CPU index" >&2
      exit 1; }
  fi
fi
# StreamGuard builds two small C extensions (the tree-sitter walk and the tokenizer's splitter).
if ! command -v "${CC:-cc}" >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1 && ! command -v clang >/dev/null 2>&1; then
  echo "error: no C compiler found. StreamGuard builds C extensions (streamguard.data._treewalk, _pieces);" \
       "install gcc and the Python headers (Debian/Ubuntu: apt-get install gcc python3.11-dev) or set CC" >&2
  exit 1
fi
echo "==> installing streamguard[$EXTRAS]"
"${PIP[@]}" install -q -e ".[$EXTRAS]"
# checkov (tests/k8s scans the rendered chart) pins boto3, networkx and packaging far below
# this environment's, so it gets a venv of its own instead of the dev extra.
if [[ ",$EXTRAS," == *",dev,"* ]] && [ ! -x .venv/tools/checkov/bin/checkov ]; then
  echo "==> installing checkov into .venv/tools/checkov"
  "$PYTHON" -m venv .venv/tools/checkov
  .venv/tools/checkov/bin/python -m pip install -q --disable-pip-version-check "checkov>=3.2,<4"
fi
.venv/bin/python - <<'PY'
import torch, streamguard
print(f"streamguard {streamguard.__version__}, torch {torch.__version__} "
      f"({'CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU build'})")
PY
