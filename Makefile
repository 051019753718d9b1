# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian's chromium for the dashboard's browser test (Playwright drives it; no browser download).
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
export BANK_HOME ?= $(CURDIR)/.bank

.PHONY: demo test unit install clean kafka-start kafka-stop registry-start registry-stop

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## make demo: start the broker and a worker, run the banking scenario, print the views, stop (KEEP=1 keeps them)
demo: $(STAMP)
	$(BIN)/bank demo

## make test: unit, component and integration tests; integration tests start and stop the real broker and
## the Schema Registry (built once with Maven, cached in .bank/registry/app like the Kafka jars). Two
## pytest-xdist workers, a module each at a time, on ports 1000 apart (tests/integration/conftest.py)
test: $(STAMP) $(CHROMIUM)
	BANK_REGISTRY_APP=$${BANK_REGISTRY_APP:-$(CURDIR)/.bank/registry/app} $(BIN)/bank registry build
	$(BIN)/python -m pytest -ra --durations=15 -n 2 --dist loadfile

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

unit: $(STAMP)
	$(BIN)/python -m pytest -ra tests/unit tests/component

kafka-start: $(STAMP)
	$(BIN)/bank kafka start

kafka-stop: $(STAMP)
	$(BIN)/bank kafka stop

registry-start: $(STAMP)
	$(BIN)/bank registry start

registry-stop: $(STAMP)
	$(BIN)/bank registry stop

clean:
	-$(BIN)/bank kafka stop
	-$(BIN)/bank registry stop
	rm -rf $(VENV) .bank
