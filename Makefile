# osloscope developer entry points. `make demo` and `make test` work on a fresh
# machine with Python >= 3.11: they create .venv and install everything first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test unit integration bench bench-pipeline bench-fleet bench-latency bench-state clean

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

## bench-pipeline: one worker, raw topic -> Elasticsearch, index_events = all and warning+,
## against the raw consume rate. The bench-* targets use OSLOSCOPE_KAFKA_BOOTSTRAP and
## OSLOSCOPE_ES_URL when set, else `osloscope services up`; BENCH_ARGS passes options.
bench-pipeline: $(STAMP)
	$(BIN)/python tests/benchmarks/bench_pipeline.py $(BENCH_ARGS)

## bench-fleet: the same backlog taken by one worker and by two (same app id)
bench-fleet: $(STAMP)
	$(BIN)/python tests/benchmarks/bench_fleet.py $(BENCH_ARGS)

## bench-latency: 20 shippers writing a steady live load; line -> incident searchable
## p50/p99 and the consumer lag over time (e.g. BENCH_ARGS='--rate 750 --set worker.source_slack=0')
bench-latency: $(STAMP)
	$(BIN)/python tests/benchmarks/bench_latency.py $(BENCH_ARGS)

## bench-state: bytes the stages write to their changelogs against whole-state rewrites
## (in one process, no Kafka; BENCH_ARGS='--mode live --batch 400' for a live load)
bench-state: $(STAMP)
	$(BIN)/python tests/benchmarks/bench_state.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
