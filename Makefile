# Every user-facing target runs `setup` first, so `make demo` and `make test` work on a fresh clone.
PY      := .venv/bin/python
STAMP   := .venv/.setup-stamp
# the browser the security tests attack the control API from (Debian's; Playwright never downloads one)
CHROMIUM := /usr/bin/chromium

.PHONY: setup test lint demo bench bench-rpc chaos sim scale clean

setup: $(STAMP) node_modules/.package-lock.json $(CHROMIUM)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

$(CHROMIUM):
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	elif command -v apt-get >/dev/null && sudo -n true 2>/dev/null; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@test -x $(CHROMIUM) || { echo "error: the browser tests need Debian's chromium at $(CHROMIUM) and it could" \
		"not be installed here (needs apt-get as root or passwordless sudo): run" \
		"'apt-get update && apt-get install -y chromium' as root, then make again" >&2; exit 1; }

# the web desk's JavaScript modules must at least parse (node is here for the Grapes anyway)
JS := $(wildcard src/otc/web/static/js/*.js)
JSCHECK := for f in $(JS); do node --experimental-default-type=module --check $$f || exit 1; done

test: setup
	$(PY) -m ruff check src tests bench scripts
	$(PY) -m mypy
	@$(JSCHECK)
	$(PY) -m pytest -q

# the 150-process test (also in `test`) alone, printing its figures: about 3 min on 2 cores
scale: setup
	$(PY) -m pytest -q -s tests/scale

lint: setup
	$(PY) -m ruff check src tests bench scripts
	$(PY) -m ruff format --check src tests bench scripts
	$(PY) -m mypy
	@$(JSCHECK)

# KEEP=1 make demo: leave the market running (and its web desks open) until Ctrl-C
demo: setup
	$(PY) scripts/demo.py $(if $(KEEP),--keep)

bench-rpc: setup
	$(PY) bench/rpc.py

bench: setup bench-rpc
	$(PY) bench/exchange.py
	$(PY) bench/rfq.py

sim: setup
	$(PY) -m otc.sim --peers $${PEERS:-1000} --seed $${SEED:-1}

chaos: setup
	$(PY) scripts/chaos.py --seed $${SEED:-1} --peers $${PEERS:-5} --seconds $${DURATION:-60}

clean:
	rm -rf .venv node_modules .pytest_cache .mypy_cache .ruff_cache
