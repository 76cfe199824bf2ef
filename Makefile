# The two entry points of the README: `make demo` (the daemon watching the local lab, a
# fault injected, an incident opened) and `make test`. Both set the machine up first.
.PHONY: setup demo test lint bench clean

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

test: setup lint
	.venv/bin/python -m pytest -q

lint:
	.venv/bin/ruff check recorder probes tests bench
	.venv/bin/ruff format --check recorder probes tests bench
	.venv/bin/mypy

bench: setup
	bash bench/run-all.sh

clean:
	rm -rf .venv dist build .pytest_cache .mypy_cache .ruff_cache
