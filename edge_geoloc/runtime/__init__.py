"""On-board runtime: inference backends (``runtime.backends``), tile index, pipeline.

Import the submodule you need (``from edge_geoloc.runtime.backends import load_backend``); nothing is
imported here, so ``import edge_geoloc.runtime`` stays cheap.
"""
