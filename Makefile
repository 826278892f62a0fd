# Two commands: `make serve` and `make test`. Both run the idempotent setup first.
PY := .venv/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup serve test

setup:
	scripts/setup.sh

serve: setup
	$(PY) -m app serve --host $(HOST) --port $(PORT)

# pytest exits 5 when it collects no tests; that is a failure too (any non-zero exit fails make).
test: setup
	@$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$rc
