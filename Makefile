# The two set-up commands of the README: `make demo` and `make test`. Both work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
LEROBOT_VENV := .lerobot-venv
DEB_PACKAGES := libegl1 libosmesa6 libgl1 postgresql chromium
export MUJOCO_GL ?= egl
# Warp kernels and MJX programs are JIT-compiled (~1 min cold on a CPU); cache them across test runs
export WARP_CACHE_PATH ?= $(CURDIR)/.cache/warp
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.cache/jax

.PHONY: demo demo-stop test install system-deps lerobot-venv bench clean

# the quickstart pipeline; its policy server and the web console stay up (detached) until `make demo-stop`;
# the last lines printed are the console's one-time sign-in URL and the command that opens it
demo: install
	$(VENV)/bin/embodia quickstart --out out/quickstart
	$(VENV)/bin/embodia console start

demo-stop:
	-$(VENV)/bin/embodia deployments stop quickstart
	$(VENV)/bin/embodia console stop

test: install lerobot-venv
	EMBODIA_LEROBOT_PYTHON=$(CURDIR)/$(LEROBOT_VENV)/bin/python $(VENV)/bin/pytest -q -p no:cacheprovider

install: system-deps $(VENV)/.installed

system-deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing -- run: sudo apt-get install$$missing"; exit 1; fi; \
	fi

# torch first, from the local CPU wheel (a plain `torch` would pull a multi-GB CUDA build)
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test,mjx,warp,ray]"
	touch $@

lerobot-venv: $(LEROBOT_VENV)/.ready

$(LEROBOT_VENV)/.ready:
	bash scripts/lerobot-side-venv.sh $(LEROBOT_VENV)
	touch $@

bench: install
	$(PY) benchmarks/sim_throughput.py

clean:
	rm -rf $(VENV) $(LEROBOT_VENV) out runs
