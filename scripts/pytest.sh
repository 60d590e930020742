#!/usr/bin/env bash
# pytest as the suite runs (scripts/test.sh and scripts/under-load.sh call it): in parallel worker
# processes (pytest-xdist), two per CPU, tests marked xdist_group("name") all on one worker.
#
#   scripts/pytest.sh [PYTEST ARGS...]      e.g. tests/unit -x; -n 0 runs serially, -n N with N workers
#
# Most tests wait on sockets and child processes, so two workers per CPU keep the CPUs busy (on the
# 2-core machine: 4 min 25 s, against 11 min 32 s serially). BMS_TEST_WORKERS sets the number instead.
set -euo pipefail
cd "$(dirname "$0")/.."

for arg in "$@"; do
  case "$arg" in
    -n|-n[0-9]*|-nauto|-nlogical|--numprocesses|--numprocesses=*|no:xdist) exec .venv/bin/pytest "$@" ;;
  esac
done
cpus=$(nproc 2>/dev/null || echo 2)
workers=${BMS_TEST_WORKERS:-$((2 * cpus))}
exec .venv/bin/pytest -n "$workers" --dist loadgroup "$@"
