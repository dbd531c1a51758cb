# One venv, one command per job. `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
VAR    ?= var

DATA   ?= $(VAR)/demo/tickets.csv
MODEL  ?= $(VAR)/models/latest
EPOCHS ?=
HOST   ?= 127.0.0.1
PORT   ?= 8000
STORE  ?= model_store
# Test files run in this many processes (a file's tests stay together in one), in a random
# order (pytest-randomly prints the seed; SEED=N repeats an order). Three on two cores: much of
# a served test's time is waiting (a JVM starting and stopping, a training child or TorchServe
# worker starting, polls), which a third process fills. The fast tier waits on nothing: two.
TEST_WORKERS ?= 3
FAST_WORKERS ?= 2
SEED   ?=
# `make archive` packs MODEL when given (command line or environment), else the newest trained
# model under $(VAR): make train -> $(VAR)/models/<name>, the service -> $(VAR)/models/v<N>,
# make demo (a service on $(VAR)/demo) -> $(VAR)/demo/models/v<N>.
NEWEST_MODEL   = $(patsubst %/model.safetensors,%,$(firstword $(shell ls -t \
                 $(VAR)/models/*/model.safetensors $(VAR)/demo/models/*/model.safetensors \
                 2>/dev/null)))
ARCHIVE_MODEL  = $(if $(filter command line environment,$(origin MODEL)),$(MODEL),$(NEWEST_MODEL))

.PHONY: help install test test-fast lint format demo serve train archive torchserve torchserve-stop bench bundle image clean

help:
	@echo "make install   create $(VENV) and install the project with its dev tools"
	@echo "make test      run the test suite (real training, real TorchServe; TEST_WORKERS=3 processes)"
	@echo "make test-fast the tests without TorchServe or training beyond a tiny model (about a minute)"
	@echo "make lint      ruff check + format check"
	@echo "make demo      sample data -> service -> upload -> train -> classify (through the API)"
	@echo "make serve     run TorchServe + the /api/v1 service on $(HOST):$(PORT), data in $(VAR)/"
	@echo "make train     train DATA=file.csv into MODEL=dir (EPOCHS=n to override the default)"
	@echo "make archive   pack the newest trained model (or MODEL=dir) into $(STORE)/ticket-vN.mar"
	@echo "make torchserve / torchserve-stop   start / stop TorchServe with config.properties"
	@echo "make bench     TorchServe vs the handler's in-process pass vs pipeline() (MODEL=dir optional)"
	@echo "make bundle    dist/ticketserve-<version>-offline.tar: every wheel + install.sh, for servers without internet"
	@echo "make image     the container image localhost/ticketserve:<version> with podman, no registry needed (BASE=, MIRROR=, IMAGE=)"

$(BIN)/ticketserve: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/ticketserve

# The tests start hundreds of Python processes: they keep bytecode caches (and pytest its
# rewritten test modules) even where PYTHONDONTWRITEBYTECODE is set, as many container images do.
# Each uses one thread for torch and BLAS (TEST_THREADS): several of them run at once on every
# core, and threads beyond one per process spin-wait against each other (measured: a training
# beside two busy processes took 110 s of CPU with 2 threads, 48 s with 1).
TEST_THREADS ?= 1
PYTEST = PYTHONDONTWRITEBYTECODE= OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest --dist loadfile --no-loadscope-reorder $(if $(SEED),--randomly-seed=$(SEED))

test: install
	$(PYTEST) -n $(TEST_WORKERS)

test-fast: install
	TEST_TIER=fast $(PYTEST) -n $(FAST_WORKERS) -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

train: install
	$(BIN)/ticketserve train $(DATA) --out $(MODEL) $(if $(EPOCHS),--epochs $(EPOCHS))

demo: install
	bash scripts/demo.sh

serve: install
	$(BIN)/ticketserve serve --host $(HOST) --port $(PORT) --data-dir $(VAR)

archive: install
	@test -n "$(ARCHIVE_MODEL)" || { echo "no trained model under $(VAR)/models or" \
	  "$(VAR)/demo/models: run make demo or make train, or pass MODEL=dir" >&2; exit 1; }
	$(BIN)/ticketserve archive $(ARCHIVE_MODEL) --store $(STORE) $(if $(VERSION),--version $(VERSION))

torchserve: install
	$(BIN)/torchserve --start --ncs --ts-config config.properties

torchserve-stop: install
	$(BIN)/torchserve --stop

bundle: install
	bash scripts/bundle.sh

image: install
	bash scripts/image.sh

bench: install
	$(BIN)/python bench/serve.py $(if $(filter command line environment,$(origin MODEL)),--model $(MODEL))

clean:
	rm -rf $(VAR) .pytest_cache .ruff_cache
