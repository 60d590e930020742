#!/usr/bin/env bash
# The whole test suite on a fresh Debian/Ubuntu machine: system packages the tests talk to,
# a virtual environment with the project and its dev tools, lint, type check, tests.
#
#   scripts/test.sh [PYTEST ARGS...]                 set up, ruff, mypy, pytest once
#   scripts/test.sh --under-load [--repeat N] [PYTEST ARGS...]
#                                                    set up, then pytest N times in a row (default 3)
#                                                    while one busy-loop process per CPU occupies
#                                                    the machine; fails if any run fails
set -euo pipefail
cd "$(dirname "$0")/.."

under_load=0
repeat=3
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --under-load) under_load=1 ;;
    --repeat) [ $# -ge 2 ] || { echo "--repeat needs a number" >&2; exit 2; }; repeat=$2; shift ;;
    --repeat=*) repeat=${1#--repeat=} ;;
    *) args+=("$1") ;;
  esac
  shift
done
case "$repeat" in ''|*[!0-9]*|0) echo "--repeat: a positive whole number, got '$repeat'" >&2; exit 2 ;; esac

pkgs=()
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || pkgs+=(mosquitto)
command -v victoria-metrics >/dev/null || pkgs+=(victoria-metrics)
command -v chromium >/dev/null || pkgs+=(chromium chromium-driver)
command -v systemd-analyze >/dev/null || pkgs+=(systemd)
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "installing system packages: ${pkgs[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}"
fi
# The packaged broker may start as a service on 1883; the tests start their own on free ports.

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]'

if [ "$under_load" -eq 0 ]; then
  echo "== ruff"
  .venv/bin/ruff check gateway tests bench
  echo "== mypy"
  .venv/bin/mypy
  echo "== pytest"
  .venv/bin/pytest ${args[@]+"${args[@]}"}
  exit 0
fi

# Under load: the tests must not depend on timing, so they must pass while every CPU is busy.
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
  if .venv/bin/pytest ${args[@]+"${args[@]}"}; then
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
