# Entry points of the README: `make demo` and `make test` each set up what they need first.
SHELL := /bin/bash

.PHONY: setup demo test doctor bench clean

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

test: setup
	bash scripts/test.sh

doctor: setup
	source env.sh && ros3d-agent doctor

clean:
	rm -rf build .venv .pytest_cache
