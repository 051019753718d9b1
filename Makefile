# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export BANK_HOME ?= $(CURDIR)/.bank

.PHONY: demo test unit install clean kafka-start kafka-stop

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## make demo: start the broker and a worker, run the banking scenario, print the views, stop (KEEP=1 keeps them)
demo: $(STAMP)
	$(BIN)/bank demo

## make test: unit, component and integration tests; integration tests start and stop the real broker
test: $(STAMP)
	$(BIN)/python -m pytest -ra

unit: $(STAMP)
	$(BIN)/python -m pytest -ra tests/unit tests/component

kafka-start: $(STAMP)
	$(BIN)/bank kafka start

kafka-stop: $(STAMP)
	$(BIN)/bank kafka stop

clean:
	-$(BIN)/bank kafka stop
	rm -rf $(VENV) .bank
