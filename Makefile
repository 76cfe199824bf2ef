# Shortcuts for the scripts the README names (they work without make, too).
.PHONY: setup demo test lint bench reliability-receiver clean

setup:
	bash scripts/setup.sh

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

lint:
	.venv/bin/ruff check recorder probes tests bench
	.venv/bin/ruff format --check recorder probes tests bench
	.venv/bin/mypy

bench:
	bash bench/run-all.sh

reliability-receiver:  # 10 minutes: a hanging/500 webhook receiver beside probing and detection
	bash scripts/reliability-receiver.sh

clean:
	rm -rf .venv dist build .pytest_cache .mypy_cache .ruff_cache
