#!/usr/bin/env bash
# Mutation testing (issue 14, "How strong the tests are"): how many small edits of the checker's
# rules, the loss and metric tables and the loss lowering do the fast tests notice?
#
#   bench/mutation.sh                      # the scope of docs/soundness.md
#   bench/mutation.sh compiler/rules.py    # one file (paths as in this repository)
#   JOBS=1 bench/mutation.sh               # worker processes (default 2)
#
# mutmut is a measuring tool, not a dependency: this script installs it into .venv. mutmut 3
# names a mutant by its file path and requires the tests to import the module under that name,
# while this repository maps `dnn.compiler` onto `compiler/` (pyproject's package-dir). So the
# script stages a copy laid out as an ordinary package (build/mutation/dnn/compiler/...), writes
# the `[tool.mutmut]` table into the staged pyproject.toml only, and runs mutmut there; the
# working tree is never mutated. Results: `mutmut results` / `mutmut show NAME` in build/mutation.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
STAGE=${STAGE:-$ROOT/build/mutation}
JOBS=${JOBS:-2}

if [ $# -gt 0 ]; then
    FILES=("$@")
else
    FILES=(compiler/rules.py compiler/registry/losses.py compiler/registry/metrics.py)
fi

"$PY" -m pip install --quiet 'mutmut>=3.8,<4'

rm -rf "$STAGE"
mkdir -p "$STAGE/dnn"
cp dnn/*.py "$STAGE/dnn/"
cp -r compiler "$STAGE/dnn/compiler"
cp -r runtime "$STAGE/dnn/runtime"
cp -r grammar "$STAGE/dnn/grammar"
cp -r tests examples "$STAGE/"
find "$STAGE" -name __pycache__ -prune -exec rm -rf {} +

# The fast tests that reach these modules. Training runs (JIT compiles of a few seconds each)
# are left out: they test lowering and the loop, and would make each mutant cost a minute.
TESTS=(tests/test_errors.py tests/test_contract.py tests/test_soundness.py tests/test_outputs.py
    tests/test_registry_tables.py tests/test_losses_init.py tests/test_metrics.py tests/test_rules.py)
SLOW="not trains and not units_train and not unit_train and not targets_train"
SLOW="$SLOW and not check_and_train and not train_evaluate and not end_to_end"
SLOW="$SLOW and not shard_over and not archives_feed and not reports_regression"
SLOW="$SLOW and not split_without_val"

toml_list() { # quoted, comma-separated
    local out="" x
    for x in "$@"; do out="$out\"$x\", "; done
    echo "[${out%, }]"
}
ONLY=()
for f in "${FILES[@]}"; do ONLY+=("dnn/$f"); done

cat > "$STAGE/pyproject.toml" <<EOF
[tool.pytest.ini_options]
testpaths = ["tests"]

[tool.mutmut]
source_paths = ["dnn"]
also_copy = ["examples"]
only_mutate = $(toml_list "${ONLY[@]}")
pytest_add_cli_args_test_selection = $(toml_list "${TESTS[@]}" -k "$SLOW")
pytest_add_cli_args = ["-p", "no:cacheprovider"]
# JAX starts threads when a test first computes; fork workers from a server that has only
# collected the tests, never from the process that ran them.
process_isolation = "forkserver"
EOF

cd "$STAGE"
nice -n 5 "$ROOT/.venv/bin/mutmut" run --max-children "$JOBS"
"$ROOT/.venv/bin/mutmut" results
