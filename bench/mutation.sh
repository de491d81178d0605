#!/usr/bin/env bash
# Mutation testing (issue 14, "How strong the tests are"): how many small edits of the checker's
# rules, the registries' functions and the lowering modules do the fast tests notice?
#
#   bench/mutation.sh                          # SCOPE=rules: the checker's rules (docs/soundness.md)
#   SCOPE=loss bench/mutation.sh               # compiler/lower_loss.py
#   SCOPE=optax bench/mutation.sh              # compiler/lower_optax.py
#   SCOPE=registry bench/mutation.sh           # the function bodies of compiler/registry/*.py
#   SCOPE=flax bench/mutation.sh               # lower_flax.py, lower_attention.py, lower_convs.py
#   SCOPE=loss bench/mutation.sh compiler/lower_loss.py   # files given: they replace the scope's
#   SCOPE=flax NAMES="a b" bench/mutation.sh   # run only the named mutants (a sample, or survivors)
#   SCOPE=flax LIST=1 bench/mutation.sh       # only generate the mutants and print their names
#   SCOPE=flax FRESH=1 NAMES="a b" bench/mutation.sh  # each in a fresh pytest process (below)
#   ONLY_TESTS="tests/a.py tests/b.py" ...     # these tests instead of the scope's
#   JOBS=1 bench/mutation.sh                   # worker processes (default 2)
#   STAGE=/tmp/m bench/mutation.sh             # where the staged copy goes (default build/mutation)
#
# Each scope names its files and the fast tests that reach them (tests_of below); the registry
# tables themselves (module-level `LOSSES.add(...)` rows) give mutmut no mutants: see
# bench/mutate_tables.py for those.
#
# mutmut is a measuring tool, not a dependency: this script installs it into .venv. mutmut 3
# names a mutant by its file path and requires the tests to import the module under that name,
# while this repository maps `dnn.compiler` onto `compiler/` (pyproject's package-dir). So the
# script stages a copy laid out as an ordinary package (build/mutation/dnn/compiler/...), writes
# the `[tool.mutmut]` table into the staged pyproject.toml only, and runs mutmut there; the
# working tree is never mutated. Results: `mutmut results` / `mutmut show NAME` in the stage.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
STAGE=${STAGE:-$ROOT/build/mutation}
JOBS=${JOBS:-2}
SCOPE=${SCOPE:-rules}
read -r -a NAMES <<<"${NAMES:-}"

# Files and tests per scope. A test module that computes with JAX at import (module-level
# arrays: tests/test_param_groups.py) is left out: mutmut collects the tests in a fork server,
# and a child forked after XLA has started its threads can deadlock (seen as timeouts); the
# tests in tests/test_lowering_mutants.py cover what it covers, building their arrays inside
# each test. Training runs (JIT compiles of seconds each: test_contract's `trains` cases,
# test_smoke_train, test_train, test_scan_repeat's `class5` cases, test_attention's XLA memory
# check) are left out: the lowering modules' numeric tests cover the same functions against NumPy
# references in milliseconds.
case $SCOPE in
rules)
    SCOPE_FILES=(compiler/rules.py compiler/registry/losses.py compiler/registry/metrics.py)
    TESTS=(tests/test_errors.py tests/test_contract.py tests/test_soundness.py
        tests/test_outputs.py tests/test_registry_tables.py tests/test_losses_init.py
        tests/test_metrics.py tests/test_rules.py) ;;
loss)
    SCOPE_FILES=(compiler/lower_loss.py)
    TESTS=(tests/test_losses_init.py tests/test_contract.py tests/test_lowering_mutants.py) ;;
optax)
    SCOPE_FILES=(compiler/lower_optax.py)
    TESTS=(tests/test_optimizers.py tests/test_schedules.py tests/test_contract.py
        tests/test_lowering_mutants.py) ;;
registry)
    SCOPE_FILES=(compiler/registry/core.py compiler/registry/types.py
        compiler/registry/layers.py compiler/registry/optimizers.py
        compiler/registry/schedules.py compiler/registry/data.py compiler/registry/sections.py
        compiler/registry/sweep.py compiler/registry/metrics.py compiler/registry/attention.py
        compiler/registry/convs.py compiler/registry/clippers.py compiler/registry/weights.py
        compiler/registry/losses.py)
    TESTS=(tests/test_registry_tables.py tests/test_errors.py tests/test_contract.py
        tests/test_rules.py tests/test_reference.py tests/test_outputs.py tests/test_counts.py
        tests/test_lower_flax.py tests/test_registry_mutants.py tests/test_attention.py
        tests/test_conv_family.py tests/test_norms.py tests/test_tying.py) ;;
flax)
    SCOPE_FILES=(compiler/lower_flax.py compiler/lower_attention.py compiler/lower_convs.py)
    TESTS=(tests/test_lower_flax.py tests/test_layers_numeric.py tests/test_losses_init.py
        tests/test_one_channel_conv.py tests/test_pool_tiling.py tests/test_contract.py
        tests/test_lowering_mutants.py tests/test_attention.py tests/test_conv_family.py
        tests/test_norms.py tests/test_tying.py tests/test_scan_repeat.py
        tests/test_flax_mutants.py) ;;
*)
    echo "unknown SCOPE=$SCOPE (rules, loss, optax, registry, flax)" >&2
    exit 2 ;;
esac
if [ $# -gt 0 ]; then SCOPE_FILES=("$@"); fi
if [ -n "${ONLY_TESTS:-}" ]; then read -r -a TESTS <<<"$ONLY_TESTS"; fi
EXISTING=()
for t in "${TESTS[@]}"; do [ -e "$t" ] && EXISTING+=("$t"); done
TESTS=("${EXISTING[@]}")
SLOW="not trains and not units_train and not unit_train and not targets_train"
SLOW="$SLOW and not check_and_train and not train_evaluate and not end_to_end"
SLOW="$SLOW and not shard_over and not archives_feed and not reports_regression"
SLOW="$SLOW and not split_without_val and not near_what_xla_keeps and not class5"

"$PY" -m pip install --quiet 'mutmut>=3.8,<4'

rm -rf "$STAGE"
mkdir -p "$STAGE/dnn"
cp dnn/*.py "$STAGE/dnn/"
cp -r compiler "$STAGE/dnn/compiler"
cp -r runtime "$STAGE/dnn/runtime"
cp -r grammar "$STAGE/dnn/grammar"
cp -r tests examples docs "$STAGE/"
find "$STAGE" -name __pycache__ -prune -exec rm -rf {} +

toml_list() { # quoted, comma-separated
    local out="" x
    for x in "$@"; do out="$out\"$x\", "; done
    echo "[${out%, }]"
}
ONLY=()
for f in "${SCOPE_FILES[@]}"; do ONLY+=("dnn/$f"); done

cat > "$STAGE/pyproject.toml" <<TOML
[tool.pytest.ini_options]
testpaths = ["tests"]

[tool.mutmut]
source_paths = ["dnn"]
also_copy = ["examples", "docs"]
only_mutate = $(toml_list "${ONLY[@]}")
pytest_add_cli_args_test_selection = $(toml_list "${TESTS[@]}" -k "$SLOW")
pytest_add_cli_args = ["-p", "no:cacheprovider"]
# JAX starts threads when a test first computes; fork workers from a server that has only
# collected the tests, never from the process that ran them.
process_isolation = "forkserver"
TOML

cd "$STAGE"
generate() {
    "$PY" - <<'PYLIST' >/dev/null
from mutmut.__main__ import copy_also_copy_files, copy_src_dir, create_mutants, setup_source_paths
copy_src_dir()
copy_also_copy_files()
setup_source_paths()
create_mutants(1)
PYLIST
}
if [ -n "${LIST:-}" ]; then # generate only: one name a line, for drawing a sample
    generate
    "$PY" -c 'import json, pathlib
for m in sorted(pathlib.Path("mutants").rglob("*.py.meta")):
    print("\n".join(json.loads(m.read_text())["exit_code_by_key"]))'
    exit 0
fi
if [ -n "${FRESH:-}" ]; then # each named mutant in a fresh pytest process, over all the tests
    # mutmut forks its workers from a process that has imported the code already, so a mutant
    # in code that runs at import (a factory such as lower_flax._pool or registry/layers.py's
    # _conv, called once to build a table) is never switched on, and survives whatever the
    # tests; and it is run against the first test only (import-time calls are counted to it).
    # Here the mutant is switched on before the import (MUTANT_UNDER_TEST) and meets every test
    # of the scope, stopping at the first failure. Prints `killed NAME` or `survived NAME`.
    generate
    cd mutants
    for name in "${NAMES[@]}"; do
        rc=0
        MUTANT_UNDER_TEST=$name nice -n 5 "$PY" -m pytest -x -q -p no:cacheprovider \
            "${TESTS[@]}" -k "$SLOW" >/dev/null 2>&1 || rc=$?
        if [ $rc -eq 0 ]; then echo "survived $name"; else echo "killed $name (pytest exit $rc)"; fi
    done
    exit 0
fi
echo "scope $SCOPE: ${SCOPE_FILES[*]}; tests: ${TESTS[*]}; commit $(git -C "$ROOT" rev-parse --short HEAD)"
start=$(date +%s)
nice -n 5 "$ROOT/.venv/bin/mutmut" run --max-children "$JOBS" "${NAMES[@]}"
echo "mutmut run took $(($(date +%s) - start)) s"
"$ROOT/.venv/bin/mutmut" results
