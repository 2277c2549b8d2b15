# homevisits: every target builds .venv from the pinned requirements on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: validate demo test bench lint clean word-forms

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# Check the sheet against the policy (the demo workbook when there is no homevisits.toml).
validate: $(STAMP)
	@$(BIN)/homevisits validate $(ARGS); status=$$?; \
	if [ $$status -eq 1 ]; then echo "(homevisits exited 1: the check worked and found errors or alerts to fix)"; exit 0; fi; \
	exit $$status

# The whole pipeline on the bundled demo workbook.
demo: $(STAMP)
	$(BIN)/python -m homevisits.demo

# The suite in parallel, one worker per core (pytest-xdist); an idle worker takes tests from the other's
# queue (worksteal), so one long file never runs alone at the end. PYTEST_WORKERS=0 runs it in one process.
# PYTHONDONTWRITEBYTECODE is cleared so the bytecode of the modules and of the assert-rewritten tests is
# kept in __pycache__ (git ignores it): otherwise every worker and every child python compiles it all again.
# The tests' temporary folders go on the RAM disk when the machine has one with 2 GB free (TEST_TMPDIR=
# keeps TMPDIR): the ledger syncs every write to disk, as it must, and on a busy disk those waits were a
# third of test_jobs.py. A container's small /dev/shm (often 64 MB) is not used.
PYTEST_WORKERS ?= auto
TEST_TMPDIR ?= $(shell test -d /dev/shm -a -w /dev/shm && df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 && $$4 >= 2097152 { print "/dev/shm" }')
test: $(STAMP)
	PYTHONDONTWRITEBYTECODE= $(if $(TEST_TMPDIR),TMPDIR=$(TEST_TMPDIR)) \
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Rebuild the bundled Word forms (templates/forms/*.docx) and the README's table of their placeholders.
word-forms: $(STAMP)
	$(BIN)/python scripts/make_word_forms.py
	$(BIN)/python scripts/make_word_forms.py --readme
	$(BIN)/homevisits forms $(addprefix --check-template ,$(wildcard templates/forms/*.docx))

lint: $(STAMP)
	$(BIN)/ruff check scripts tests bench
	$(BIN)/ruff format --check scripts tests bench

clean:
	rm -rf $(VENV) demo state .pytest_cache .ruff_cache .hypothesis
