"""The on-board path imports without a training framework: every module of runtime, fusion, sensors, fieldlog,
interop and geo (and the engine-building part of export) is imported in a fresh interpreter where importing
torch, torchvision, timm or matplotlib raises ImportError (what a Jetson with only
``pip install edge-geoloc[runtime]`` would see)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

ONBOARD_PACKAGES = ("runtime", "fusion", "sensors", "fieldlog", "interop", "geo")
# What a vehicle uses of the export step: reading sidecars and manifests, building TensorRT engines on board.
ONBOARD_EXPORT_MODULES = ("edge_geoloc.export.sidecar", "edge_geoloc.export.manifest", "edge_geoloc.export.engine_cli",
                          "edge_geoloc.export.tensorrt_build", "edge_geoloc.export.tensorrt_api")
TRAINING_FRAMEWORKS = ("torch", "torchvision", "timm", "matplotlib")
# The PyTorch reference backend is the one on-board module that runs a checkpoint, so it needs torch by design;
# load_backend imports it only for kind="torch".
NEEDS_TORCH = ("edge_geoloc.runtime.backends.torch_backend",)

SCRIPT = textwrap.dedent("""
    import importlib, importlib.abc, json, pkgutil, sys

    BLOCKED = set(sys.argv[1].split(","))

    class BlockTrainingFrameworks(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked: the on-board path must not import it")
            return None

    sys.meta_path.insert(0, BlockTrainingFrameworks())
    failures, imported = {}, []
    for package in sys.argv[2].split(","):
        root = importlib.import_module("edge_geoloc." + package)
        for info in pkgutil.walk_packages(root.__path__, root.__name__ + "."):
            try:
                importlib.import_module(info.name)
                imported.append(info.name)
            except ImportError as err:
                failures[info.name] = str(err)
    for name in sys.argv[3].split(","):
        importlib.import_module(name)
        imported.append(name)
    print(json.dumps({"failures": failures, "imported": imported,
                      "loaded": sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)}))
""")


def _import_onboard_without_torch() -> dict:
    args = [sys.executable, "-c", SCRIPT, ",".join(TRAINING_FRAMEWORKS), ",".join(ONBOARD_PACKAGES),
            ",".join(ONBOARD_EXPORT_MODULES)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_onboard_packages_import_with_torch_blocked():
    report = _import_onboard_without_torch()
    unexpected = {name: err for name, err in report["failures"].items() if name not in NEEDS_TORCH}
    assert unexpected == {}, f"on-board modules that need a training framework: {unexpected}"
    assert report["loaded"] == []
    assert set(report["failures"]) == set(NEEDS_TORCH)  # the hook really blocks: the torch backend fails
    for package in ONBOARD_PACKAGES:
        assert any(name.startswith(f"edge_geoloc.{package}.") for name in report["imported"]), package
    assert set(ONBOARD_EXPORT_MODULES) <= set(report["imported"])
