# Shortcuts for the scripts the README names (they work without make, too).
.PHONY: setup demo test docker-test lint bench reliability-receiver clean

setup:
	bash scripts/setup.sh

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

# The docker lab against a real engine, every fault (README, "The docker lab"); as root
# where no engine runs, scripts/docker-lab.sh starts its own and stops it.
docker-test:
	bash scripts/setup.sh
	bash scripts/test-setup.sh
	RECORDER_DOCKER_LAB=full bash scripts/docker-lab.sh

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
