# The two commands of README.md. Both make .venv when it is missing and reuse it otherwise.
SHELL := /bin/bash
VENV := $(CURDIR)/.venv
export RASA_TELEMETRY_ENABLED := false

.PHONY: demo test env

env:
	@scripts/ensure_env.sh

# Train the example bot (Rasa skips training when nothing changed) and talk to it.
demo: env
	cd example_bot && $(VENV)/bin/rasa train && $(VENV)/bin/rasa shell $(SHELL_ARGS)

# The whole test suite.
test: env
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)
