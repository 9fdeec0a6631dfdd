# Audio Diary: `make run` starts the service on this machine, `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --only-binary=:all: --disable-pip-version-check -q
HOST ?= 127.0.0.1
PORT ?= 8000
DATA_DIR ?= var
# Debian packages the tests use: speech synthesis for real audio.
TEST_DEBS := espeak-ng

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

test: dev-install system-deps lint
	$(BIN)/python manage.py prepare_whisper_model
	$(BIN)/pytest

bench: dev-install system-deps
	$(BIN)/python manage.py run_benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
