# The course in two commands (see README.md):
#   make course   set up, then run the chapters on the tiny corpus into runs/tiny/
#   make test     set up, then run the tests (helpers, notebooks with nbmake, conventions)
PYTHON ?= python3
PROFILE ?= tiny

.PHONY: setup course test

setup:
	PYTHON=$(PYTHON) bash scripts/setup.sh

course: setup
	$(PYTHON) -m helpers.course --profile $(PROFILE)

test: setup
	$(PYTHON) -m pytest
