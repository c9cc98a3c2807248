# The course in two commands (see README.md):
#   make course   set up, then run the chapters into runs/laptop/: SmolLM2-135M-Instruct fine-tuned with
#                 LoRA on the shipped corpus, on the CPU (PROFILE=tiny: the minutes-long mechanics run)
#   make test     set up, then run the tests (helpers, notebooks with nbmake, conventions)
PYTHON ?= python3
PROFILE ?= laptop

.PHONY: setup course test

setup:
	PYTHON=$(PYTHON) bash scripts/setup.sh

course: setup
	$(PYTHON) -m helpers.course --profile $(PROFILE)

test: setup
	$(PYTHON) -m pytest
