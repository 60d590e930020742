#!/usr/bin/env bash
# The test suite while every CPU is busy: tests must not depend on timing, so they must pass here.
#
#   scripts/under-load.sh [--repeat N] [PYTEST ARGS...]
#
# Starts one busy-loop process per CPU, runs pytest N times in a row (default 3) while they run (with
# the parallel workers of scripts/pytest.sh, as scripts/test.sh runs it),
# stops them on exit (also on Ctrl-C or an error), and fails if any run failed. Expects the
# virtual environment that scripts/test.sh sets up (scripts/test.sh --under-load does both).
set -euo pipefail
cd "$(dirname "$0")/.."

repeat=3
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --repeat) [ $# -ge 2 ] || { echo "--repeat needs a number" >&2; exit 2; }; repeat=$2; shift ;;
    --repeat=*) repeat=${1#--repeat=} ;;
    *) args+=("$1") ;;
  esac
  shift
done
case "$repeat" in ''|*[!0-9]*|0) echo "--repeat: a positive whole number, got '$repeat'" >&2; exit 2 ;; esac

busy=()
stop_busy() {
  if [ ${#busy[@]} -gt 0 ]; then
    kill "${busy[@]}" 2>/dev/null || true
    wait "${busy[@]}" 2>/dev/null || true
    busy=()
  fi
}
trap stop_busy EXIT
trap 'stop_busy; exit 130' INT
trap 'stop_busy; exit 143' TERM

cpus=$(nproc 2>/dev/null || echo 2)
for _ in $(seq "$cpus"); do
  .venv/bin/python -c 'while True: pass' &
  busy+=($!)
done
echo "== pytest under load: $repeat run(s), $cpus busy-loop process(es) (pids ${busy[*]})"
failed=0
for run in $(seq "$repeat"); do
  echo "== run $run of $repeat"
  start=$SECONDS
  if scripts/pytest.sh ${args[@]+"${args[@]}"}; then
    echo "== run $run of $repeat passed in $((SECONDS - start)) s"
  else
    echo "== run $run of $repeat FAILED after $((SECONDS - start)) s"
    failed=$((failed + 1))
  fi
done
stop_busy
if [ "$failed" -gt 0 ]; then
  echo "== under load: $failed of $repeat run(s) failed"
  exit 1
fi
echo "== under load: all $repeat run(s) passed"
