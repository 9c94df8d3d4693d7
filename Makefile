# The two public commands: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLAUDE_CODE_VERSION := 2.1.330
CLAUDE_DIR := .cache/claude-code
CLAUDE_BIN := $(CLAUDE_DIR)/node_modules/.bin/claude
# The OpenID Connect provider the single sign-on tests run on 127.0.0.1 (tests/oidc_provider.mjs).
OIDC_PROVIDER_VERSION := 9.13.3
OIDC_PROVIDER_DIR := .cache/oidc-provider
OIDC_PROVIDER_PKG := $(OIDC_PROVIDER_DIR)/node_modules/oidc-provider/package.json
PYTEST_ARGS ?=
# Where `make run` serves: `make run PORT=8001` when 8000 is taken.
HOST ?= 127.0.0.1
PORT ?= 8000
# axe-core, the accessibility checker the browser tests inject: vendored in tests/vendor/axe-core/.
AXE_CORE_VERSION := 4.14.1
AXE_CORE_SHA256 := 29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c
AXE_DIR := tests/vendor/axe-core

.PHONY: run test lint check bench deps test-deps system-deps claude-cli oidc-provider clean vendor-axe screenshots

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

deps: $(VENV)/.runtime

## Serve the portal on http://127.0.0.1:8000 (HOST, PORT) with the embedded SQLite database.
run: deps
	$(PY) manage.py migrate --noinput
	@echo "Create a first account with: DJANGO_SUPERUSER_USERNAME=admin DJANGO_SUPERUSER_PASSWORD=... DJANGO_SUPERUSER_EMAIL=admin@example.com $(PY) manage.py createsuperuser --noinput"
	$(PY) manage.py runserver $(HOST):$(PORT)

system-deps:
	bash scripts/install-system-packages.sh

$(CLAUDE_BIN):
	mkdir -p $(CLAUDE_DIR)
	cd $(CLAUDE_DIR) && npm install --no-audit --no-fund --silent --no-save @anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION)
	$@ --version

claude-cli: $(CLAUDE_BIN)

$(OIDC_PROVIDER_PKG):
	mkdir -p $(OIDC_PROVIDER_DIR)
	cd $(OIDC_PROVIDER_DIR) && npm install --no-audit --no-fund --silent --no-save oidc-provider@$(OIDC_PROVIDER_VERSION)
	test -f $@

oidc-provider: $(OIDC_PROVIDER_PKG)

test-deps: system-deps $(VENV)/.dev claude-cli oidc-provider

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

check: $(VENV)/.dev
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null
	DEBUG=False SECRET_KEY=check-deploy-$$(date +%s)-a-long-random-enough-value-for-the-deploy-check ALLOWED_HOSTS=portal.example.com \
	  PORTAL_ENCRYPTION_KEYS=$$($(PY) -c 'import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())') \
	  PORTAL_AUDIT_KEYS=$$($(PY) -c 'import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())') \
	  SESSION_COOKIE_SECURE=True SECURE_SSL_REDIRECT=True SECURE_HSTS_SECONDS=31536000 \
	  SECURE_HSTS_INCLUDE_SUBDOMAINS=True SECURE_HSTS_PRELOAD=True \
	  $(PY) manage.py check --deploy --fail-level WARNING

## Install what the tests need and run the whole suite (lint and types, checks, unit, shells, browser, Claude Code e2e).
test: test-deps lint check
	CLAUDE_BIN=$(abspath $(CLAUDE_BIN)) $(PY) -m pytest $(PYTEST_ARGS)

## Benchmarks (not part of make test): they print ratios against their targets, on SQLite and PostgreSQL
## (BENCH_POSTGRES_URL, default postgres://portal:portal@127.0.0.1:5432/portal, must be able to create databases).
## Each runs even when one before it misses a target; make fails at the end if any did. http_load includes the key fetch
## (bench.key_fetch runs that part alone). The large databases are seeded once (about ten minutes each).
bench: $(VENV)/.dev
	test -f data/bench-large.sqlite3 || $(PY) -m bench.seed_large
	status=0; \
	  $(PY) -m bench.http_load || status=1; \
	  $(PY) -m bench.probe_fanout || status=1; \
	  $(PY) -m bench.pages || status=1; \
	  exit $$status

## Fetch axe-core again at the pinned version (npm) into tests/vendor/axe-core/ and check it.
vendor-axe:
	rm -rf .cache/axe-core && mkdir -p .cache/axe-core
	cd .cache/axe-core && npm pack --silent axe-core@$(AXE_CORE_VERSION) >/dev/null && tar xzf axe-core-$(AXE_CORE_VERSION).tgz
	echo "$(AXE_CORE_SHA256)  .cache/axe-core/package/axe.min.js" | sha256sum --check --quiet
	cp .cache/axe-core/package/axe.min.js .cache/axe-core/package/LICENSE .cache/axe-core/package/LICENSE-3RD-PARTY.txt $(AXE_DIR)/

## The README's screenshots (docs/*.png), from a scratch database in headless Chromium.
screenshots: $(VENV)/.dev
	$(PY) scripts/screenshots.py --out docs

clean:
	rm -rf $(VENV) $(CLAUDE_DIR) $(OIDC_PROVIDER_DIR) staticfiles .pytest_cache .ruff_cache .mypy_cache
