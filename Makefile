# osloscope developer entry points. `make demo` and `make test` work on a fresh
# machine with Python >= 3.11: they create .venv and install everything first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test integration bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

## demo: analyze the multi-host sample in deploy/samples and print the incidents
demo: $(STAMP)
	@$(BIN)/osloscope analyze deploy/samples --dead-letter - ; rc=$$?; [ $$rc -le 1 ] || exit $$rc

## test: the whole test suite
test: $(STAMP)
	$(BIN)/python -m pytest -q

## integration: start local Kafka + Elasticsearch (Maven Central, no Docker), run the
## integration tests against them, stop them again
integration: $(STAMP)
	$(BIN)/osloscope services up
	$(BIN)/python -m pytest -q -m integration tests/integration; rc=$$?; $(BIN)/osloscope services down; exit $$rc

## bench: parse+detect throughput against a bare regex baseline
bench: $(STAMP)
	$(BIN)/python tests/benchmarks/bench_parse.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
