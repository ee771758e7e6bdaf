# osloscope developer entry points. `make demo` and `make test` work on a fresh
# machine with Python >= 3.11: they create .venv and install everything first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test unit integration bench bench-pipeline clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

## demo: analyze the multi-host sample in deploy/samples and print the incidents
demo: $(STAMP)
	@$(BIN)/osloscope analyze deploy/samples --dead-letter - ; rc=$$?; [ $$rc -le 1 ] || exit $$rc

## test: the whole test suite. The integration tests start local Kafka and
## Elasticsearch (Java processes from Maven Central, no Docker; first run
## downloads ~170 MB) and stop them again at the end.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto -m 'not integration'
	$(BIN)/python -m pytest -q -m integration

## unit: the tests that need no Kafka and no Elasticsearch (fast)
unit: $(STAMP)
	$(BIN)/python -m pytest -q -n auto -m 'not integration'

## integration: only the tests against the real services
integration: $(STAMP)
	$(BIN)/python -m pytest -q -m integration

## bench: osloscope analyze end to end (>= 300k records, 10+ files), records/s,
## next to the last commit with the native parser core, built in a temporary worktree
bench: $(STAMP)
	$(BIN)/python tests/benchmarks/bench_analyze.py

## bench-pipeline: one worker, raw topic -> Elasticsearch, against the raw consume rate
bench-pipeline: $(STAMP)
	$(BIN)/python tests/benchmarks/bench_pipeline.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
