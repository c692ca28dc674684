# One-word entry points. Each target creates .venv itself: a fresh clone needs only
# Python and make.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
# The demo needs only the package, Django and the example's own dependencies (make run), or
# those and gunicorn plus a PostgreSQL driver (make serve); make test installs everything.
EXAMPLE_STAMP := $(VENV)/.installed-example
SERVE_STAMP := $(VENV)/.installed-serve
WORKERS ?= 4
HOST ?= 127.0.0.1
PORT ?= 8000

# pyenv machines keep several Pythons but activate one; tox needs to see them all. The
# shims alone are not enough (tox queries interpreters in a cleaned environment), so each
# version's bin directory also goes on PATH.
export PYENV_VERSION ?= 3.11.7:3.10.13:3.12.1:3.13.0
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null)
ifneq ($(PYENV_ROOT),)
empty :=
space := $(empty) $(empty)
PYENV_BINS := $(wildcard $(foreach v,$(subst :, ,$(PYENV_VERSION)),$(PYENV_ROOT)/versions/$(v)/bin))
export PATH := $(subst $(space),:,$(PYENV_BINS)):$(PATH)
endif
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run serve charts test tox lint typing format bench bench-all clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet --editable . --group dev
	touch $@

$(EXAMPLE_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet --editable . --group example
	touch $@

$(SERVE_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet --editable . --group serve
	touch $@

## run: start the example project on http://$(HOST):$(PORT)/ (make run PORT=8001 HOST=0.0.0.0)
run: $(EXAMPLE_STAMP)
	$(BIN)/python example_project/manage.py migrate --noinput
	@echo "Example project: http://$(HOST):$(PORT)/"
	$(BIN)/python example_project/manage.py runserver $(HOST):$(PORT)

## serve: the example project as in production: DEBUG off, collectstatic, gunicorn with
## $(WORKERS) workers; EXAMPLE_DATABASE=postgresql and EXAMPLE_SESSION_ENGINE choose storage
serve: export EXAMPLE_DEBUG := 0
serve: $(SERVE_STAMP)
	$(BIN)/python example_project/manage.py migrate --noinput
	$(BIN)/python example_project/manage.py collectstatic --noinput --verbosity 0
	@echo "Example project under gunicorn ($(WORKERS) workers): http://$(HOST):$(PORT)/"
	$(BIN)/python -m gunicorn example_project.config.wsgi --bind $(HOST):$(PORT) \
		--workers $(WORKERS) --access-logfile -

## test: the test suite on SQLite, its database tests again on PostgreSQL and MariaDB,
## then the example project's tests, again on PostgreSQL but for the browser tests
## (warnings are errors)
test: $(STAMP)
	PICKLESESSIONS_FULL_SCALE=1 $(BIN)/python -W error -m pytest $(PYTEST_ARGS)
	PICKLESESSIONS_TEST_DB=postgresql $(BIN)/python -W error -m pytest -m db $(PYTEST_ARGS)
	PICKLESESSIONS_TEST_DB=mariadb $(BIN)/python -W error -m pytest -m db $(PYTEST_ARGS)
	$(BIN)/python -W error -m pytest -c example_project/pytest.ini example_project/tests
	EXAMPLE_DATABASE=postgresql $(BIN)/python -W error -m pytest -c example_project/pytest.ini \
		example_project/tests -m "not browser"

## tox: every supported Django x Python pair, plus lint and typing
tox: $(STAMP)
	$(BIN)/tox run-parallel --parallel 2 --parallel-no-spinner $(TOX_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typing: $(STAMP)
	$(BIN)/mypy

## bench: every figure issue 12 sets a target for (codec, engines, cleanup at 100k-1M
## sessions, HTTP through gunicorn), as ratios with their spread; asserts nothing
## bench-all: also the contention benchmark
bench: $(STAMP)
	PYTHONHASHSEED=0 $(BIN)/python -m bench.codec
	PYTHONHASHSEED=0 $(BIN)/python -m bench.engines
	PYTHONHASHSEED=0 $(BIN)/python -m bench.cleanup
	PYTHONHASHSEED=0 $(BIN)/python -m bench.http

bench-all: bench
	PYTHONHASHSEED=0 $(BIN)/python -m bench.contention

## charts: the PNG charts of docs/benchmarks.md and the architecture figure, from the JSON
## figures in bench/results/ (matplotlib, the bench dependency group)
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --group bench
	touch $@

charts: $(BENCH_STAMP)
	$(BIN)/python -m bench.charts $(CHART_DATA)
	$(BIN)/python docs/figures/architecture.py

clean:
	rm -rf $(VENV) .tox .mypy_cache .ruff_cache build dist *.egg-info
