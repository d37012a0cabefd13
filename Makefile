# LLM Lab — thin wrappers; the work is done in Python (llmlab.setup, autograder).
# Learners:    make lab           (PORT=8888 OPEN_BROWSER=1 to change the defaults)
# Everyone:    make test
# Maintainers: make assignments | make lectures   (MODULE=09 for one module)
# Instructors: make grade NB=... | make grade-class SUBMISSIONS=... ASSIGNMENT=... [OUT=...]
#              make formgrader OUT=grading/...   make student-repo ASSIGNMENT=... OUT=...

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.llmlab-installed
PORT   ?= 8888
OPEN_BROWSER ?= 0
export TIKTOKEN_CACHE_DIR := $(CURDIR)/.cache/tiktoken
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup lab test assignments lectures grade grade-class formgrader student-repo clean

setup: $(STAMP)

# Re-installs only when the pins change; a second `make lab` skips straight to JupyterLab.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "LLM Lab needs Python >= 3.11 (found " + sys.version.split()[0] + "); set PYTHON=/path/to/python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m llmlab.setup install --dev
	touch $(STAMP)

lab: setup
	$(PY) -m llmlab.setup lab --port $(PORT) $(if $(filter 1 yes true,$(OPEN_BROWSER)),--browser,)

test: setup
	$(PY) -m llmlab.setup prepare
	$(PY) -m pytest

# MODULE=09_inside_a_real_llm (or 09) limits either to one module
assignments: setup
	$(PY) -m autograder release $(if $(MODULE),--only $(MODULE),)

lectures: setup
	$(PY) -m autograder run-lectures $(if $(MODULE),--only $(MODULE),)

grade: setup
	$(PY) -m autograder grade $(NB)

grade-class: setup
	$(PY) -m autograder grade-class $(SUBMISSIONS) --assignment $(ASSIGNMENT) --out $(or $(OUT),grading/$(ASSIGNMENT))

# nbgrader's formgrader (and its other instructor tools) on a grade-class output folder
formgrader: setup
	$(PY) -m autograder formgrader $(or $(OUT),grading/$(ASSIGNMENT))

student-repo: setup
	$(PY) -m autograder student-repo --assignment $(ASSIGNMENT) --out $(OUT)

clean:
	rm -rf $(VENV) .cache build
