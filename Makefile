# The two commands of the README: `make demo` (the main job) and `make test`. Both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export PYTHONHASHSEED := 0
# `make demo VEHICLE=car`: the car's urban drive through the loop (configs/demo_car.yaml, docs/demo.md)
VEHICLE ?= drone

.PHONY: venv demo demo-quick test lint bench clean-venv

venv:
	@bash scripts/install.sh

demo: venv
	$(PY) -m edge_geoloc demo --vehicle $(VEHICLE) $(ARGS)

demo-quick: venv
	$(PY) -m edge_geoloc demo --quick --vehicle $(VEHICLE) $(ARGS)

test: venv
	$(PY) -m pytest -q $(ARGS)

lint: venv
	$(VENV)/bin/ruff check edge_geoloc export tests benchmarks ros2_ws/src

clean-venv:
	rm -rf $(VENV)
