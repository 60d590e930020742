.PHONY: demo test test-load bench

# Set up and run the gateway on the embedded default (simulated racks, local store). Ctrl-C stops.
demo:
	@[ -x .venv/bin/python ] || python3 -m venv .venv
	@.venv/bin/python -m pip install -q -e . >/dev/null
	.venv/bin/bms-gateway demo

# Set up and run the whole test suite: system packages, lint, type check, tests.
test:
	./scripts/test.sh

# The test suite three times in a row while one busy-loop process per CPU occupies the machine.
test-load:
	./scripts/test.sh --under-load

bench:
	@.venv/bin/python -m bench
