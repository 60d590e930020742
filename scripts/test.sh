#!/usr/bin/env bash
# The whole test suite on a fresh Debian/Ubuntu machine: system packages the tests talk to,
# a virtual environment with the project and its dev tools, lint, type check, tests.
#
#   scripts/test.sh [PYTEST ARGS...]                 set up, ruff, mypy, pytest once (parallel workers:
#                                                    scripts/pytest.sh; -n 0 runs the tests serially)
#   scripts/test.sh --under-load [--repeat N] [PYTEST ARGS...]
#                                                    set up, then scripts/under-load.sh: pytest N times
#                                                    in a row (default 3) while one busy-loop process
#                                                    per CPU occupies the machine; fails if any run fails
set -euo pipefail
cd "$(dirname "$0")/.."

under_load=0
args=()
for arg in "$@"; do
  if [ "$arg" = --under-load ]; then under_load=1; else args+=("$arg"); fi
done

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
# The runtime dependencies (and the build backend) at exactly the versions the image pins, so the
# tests run what ships; the dev tools on top.
PIP_CONSTRAINT=constraints.txt .venv/bin/python -m pip install -q -e '.[dev]'

if [ "$under_load" -eq 1 ]; then
  exec scripts/under-load.sh ${args[@]+"${args[@]}"}
fi

echo "== ruff"
.venv/bin/ruff check gateway tests bench
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
scripts/pytest.sh ${args[@]+"${args[@]}"}
