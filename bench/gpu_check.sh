#!/usr/bin/env bash
# The GPU check: one prepared script for a lent GPU machine (the device tool; never part of the
# tests, which must pass without a GPU). It trains examples on the GPU, checks they match the
# CPU, times dnn against hand-written Flax there, and checks attention's fused path.
#
# Here, once, before the call (the GPU machine reaches no package registry; its image has jax
# with CUDA, flax, optax, orbax, scikit-learn, matplotlib, rich and pyyaml, but not lark):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl 'lark>=1.1.9'
# Then, through the device tool (carry [".whl"], timeout_s 600; the sections' own timeouts
# add up to about 8 minutes):
#   bash bench/gpu_check.sh
# Everything goes to $OUT (the tool's folder that comes back), one log per section and
# summary.txt; put the figures in docs/performance.md, saying which card gave them.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 DNN_CACHE_DIR=off

# dnn without installing it: the package `dnn` laid out from the repository's folders, as
# pyproject's package-dir maps them (dnn/, compiler/, runtime/, grammar/), plus lark's wheel.
SHIM=/tmp/dnn-shim
rm -rf "$SHIM" && mkdir -p "$SHIM/dnn"
cp dnn/*.py "$SHIM/dnn/"
for d in compiler runtime grammar; do ln -s "$PWD/$d" "$SHIM/dnn/$d"; done
if [ -d .whl ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$SHIM${PYTHONPATH:+:$PYTHONPATH}

section() { # name, seconds, command...
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s)" | tee -a "$OUT/summary.txt"
    local t0=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 3 "$OUT/$name.log" | cut -c1-600 >>"$OUT/summary.txt"
    echo "   rc $rc, $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
}

section machine 60 bash -c "nvidia-smi; $PY -c 'import jax, flax, optax; print(jax.__version__, flax.__version__, optax.__version__, jax.devices())'; $PY -m dnn --version"
# 1. the same examples on the CPU and on the GPU: per-epoch losses and test scores agree
section match 150 $PY bench/gpu_match.py --epochs 3 --out /tmp/gpu_match
# 2. examples trained to their stated scores on the GPU (examples/README.md)
section examples 120 $PY bench/examples.py digits_mlp digits_cnn tokens_transformer
# 3. dnn against hand-written Flax: a transformer encoder (steps/s, compile of 12 vs 2 layers)
section transformer 120 $PY bench/transformer.py --samples 5 --compiles 2
# 4. dnn against hand-written Flax: the MLP, as `dnn train` runs it
section overhead 60 $PY bench/overhead.py --quick
# 5. attention: the fused cuDNN path, and its fraction of the bf16 peak
section attention 60 $PY bench/gpu_attention.py --batch 16 --seq 2048 --heads 16 --dim 64
cat "$OUT/summary.txt"
