# One venv, one command per job. `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
VAR    ?= var

DATA   ?= $(VAR)/demo/tickets.csv
MODEL  ?= $(VAR)/models/latest
EPOCHS ?= 4

.PHONY: help install test lint format demo train clean

help:
	@echo "make install   create $(VENV) and install the project with its dev tools"
	@echo "make test      run the test suite (real training, real TorchServe)"
	@echo "make lint      ruff check + format check"
	@echo "make demo      sample data -> train -> classify"
	@echo "make train     train DATA=file.csv into MODEL=dir (EPOCHS=$(EPOCHS))"

$(BIN)/ticketserve: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/ticketserve

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

train: install
	$(BIN)/ticketserve train $(DATA) --out $(MODEL) --epochs $(EPOCHS)

demo: install
	bash scripts/demo.sh

clean:
	rm -rf $(VAR) .pytest_cache .ruff_cache
