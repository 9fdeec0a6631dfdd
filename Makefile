# Audio Diary: `make run` starts the service on this machine, `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --only-binary=:all: --disable-pip-version-check -q
HOST ?= 127.0.0.1
PORT ?= 8000
DATA_DIR ?= var
# Debian packages the tests use: speech synthesis for real audio, Chromium for browser tests,
# fonts for PDF exports.
TEST_DEBS := espeak-ng chromium fonts-dejavu-core

.PHONY: run test test-sqlite test-postgres bench install dev-install system-deps deploy-tools lint clean

$(VENV)/.runtime: requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	@touch $@

install: $(VENV)/.runtime

dev-install: $(VENV)/.dev

system-deps:
	@missing=""; for pkg in $(TEST_DEBS); do dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py prepare_whisper_model
	$(BIN)/python manage.py collectstatic --noinput -v0
	@echo
	@echo "  Audio Diary is running:"
	@echo "    Your diary   http://$(HOST):$(PORT)/diary/   (record or upload in the browser)"
	@echo "    API docs     http://$(HOST):$(PORT)/api/docs/"
	@echo "    Admin        http://$(HOST):$(PORT)/admin/   (create a login: $(BIN)/python manage.py createsuperuser)"
	@echo "    Upload       curl -H 'Authorization: Bearer <KEY>' -F audio_file=@diary.m4a http://$(HOST):$(PORT)/upload"
	@echo "  Stop with Ctrl-C."
	@echo
	@trap 'kill 0' EXIT INT TERM; \
	$(BIN)/celery -A diary_project worker -B -s $(DATA_DIR)/celerybeat-schedule --loglevel INFO --concurrency 1 & \
	$(BIN)/gunicorn diary_project.wsgi:application --bind $(HOST):$(PORT) --workers 2 --timeout 120 \
	  --access-logfile - & \
	wait

lint: dev-install
	$(BIN)/ruff check .

# The suite runs twice: on SQLite (the embedded default) and on PostgreSQL (production),
# where the production-path tests (SQS, S3, AWS Transcribe on moto) also run.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/diary

DEPLOY_VENV ?= .venv-deploy
# Offline checkers for Dockerfiles, workflows, Kubernetes and Terraform, kept apart from the app's pins.
$(DEPLOY_VENV)/.tools: requirements-deploy.txt
	@test -x $(DEPLOY_VENV)/bin/python || $(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install --only-binary=:all: --disable-pip-version-check -q -r requirements-deploy.txt
	@touch $@

deploy-tools: $(DEPLOY_VENV)/.tools

test: dev-install system-deps lint deploy-tools
	$(BIN)/python manage.py prepare_whisper_model
	$(BIN)/python -m pytest
	@$(MAKE) --no-print-directory test-postgres

test-sqlite: dev-install system-deps deploy-tools
	$(BIN)/python -m pytest

test-postgres: dev-install system-deps
	@if ! $(BIN)/python -c "import psycopg,sys; psycopg.connect('$(TEST_DATABASE_URL)'.rsplit('/',1)[0]+'/postgres', connect_timeout=3)" 2>/dev/null; then \
	  if command -v pg_ctlcluster >/dev/null; then \
	    echo "Starting the local PostgreSQL"; \
	    pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start || true; sleep 2; \
	  fi; \
	fi
	@if $(BIN)/python -c "import psycopg; psycopg.connect('$(TEST_DATABASE_URL)'.rsplit('/',1)[0]+'/postgres', connect_timeout=3)" 2>/dev/null; then \
	  echo "== The suite on PostgreSQL ($(TEST_DATABASE_URL)) =="; \
	  DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/python -m pytest diaries transcription; \
	elif [ -n "$$CI" ]; then \
	  echo "PostgreSQL is required in CI but $(TEST_DATABASE_URL) does not answer"; exit 1; \
	else \
	  echo "PostgreSQL at $(TEST_DATABASE_URL) does not answer: skipping the PostgreSQL pass (CI runs it)"; \
	fi

bench: dev-install system-deps
	$(BIN)/python manage.py run_benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
