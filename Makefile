# Every user-facing target runs `setup` first, so `make demo` and `make test` work on a fresh clone.
PY      := .venv/bin/python
STAMP   := .venv/.setup-stamp

.PHONY: setup test lint demo bench bench-rpc chaos sim clean

setup: $(STAMP) node_modules/.package-lock.json

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

test: setup
	$(PY) -m ruff check src tests bench scripts
	$(PY) -m mypy
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check src tests bench scripts
	$(PY) -m ruff format --check src tests bench scripts
	$(PY) -m mypy

demo: setup
	$(PY) scripts/demo.py

bench-rpc: setup
	$(PY) bench/rpc.py

bench: setup bench-rpc
	$(PY) bench/exchange.py

sim: setup
	$(PY) -m otc.sim --peers $${PEERS:-1000} --seed $${SEED:-1}

chaos: setup
	$(PY) scripts/chaos.py --seed $${SEED:-1} --peers $${PEERS:-5} --seconds $${DURATION:-60}

clean:
	rm -rf .venv node_modules .pytest_cache .mypy_cache .ruff_cache
