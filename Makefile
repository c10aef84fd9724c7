# Two commands do all set-up (see README.md):
#   make tutorial   create .venv, install, generate the embedded data set, run every notebook headless
#                   (with ASC_DATA_DIR set: run them on that folder instead, generating nothing)
#   make test       create .venv, install, run the test suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA := data/tutorial
OUT := outputs/tutorial
PYTEST_ARGS ?=

.PHONY: setup tutorial test data smoke clean-outputs

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar off -c constraints.txt -e ".[notebooks,test]"
	@touch $(STAMP)

# The embedded data set is regenerated when the generator's version changes (results in the docs are for that version).
GENERATOR_VERSION := $(shell sed -n 's/^GENERATOR_VERSION = "\(.*\)"/\1/p' asc_utils/synth/writer.py)
DATA_STAMP := $(DATA)/.generator-$(GENERATOR_VERSION)

$(DATA_STAMP): | $(STAMP)
	rm -f $(DATA)/.generator-*
	$(BIN)/asc data synth --preset tutorial --out $(DATA) --overwrite
	@touch $@

data: $(DATA_STAMP)

# With ASC_DATA_DIR set (e.g. the real TAU22 folder) the notebooks run on that folder and nothing is generated;
# otherwise on the embedded data set, generated first when needed.
ifneq ($(strip $(ASC_DATA_DIR)),)
tutorial: $(STAMP)
	$(BIN)/asc tutorial --data-dir "$(ASC_DATA_DIR)" --out $(OUT)
else
tutorial: $(STAMP) $(DATA_STAMP)
	$(BIN)/asc tutorial --data-dir $(DATA) --out $(OUT)
endif

smoke: $(STAMP)
	$(BIN)/asc tutorial --smoke --out outputs/smoke

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean-outputs:
	rm -rf outputs
