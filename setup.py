"""Packaging shim: installs the top-level ``export/`` folder as ``edge_geoloc.export``.

The design card keeps the export step at the top level of the repository; everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

library = find_packages(include=["edge_geoloc", "edge_geoloc.*"])
export = ["edge_geoloc." + name for name in find_packages(include=["export", "export.*"])]

setup(packages=library + export, package_dir={"edge_geoloc.export": "export"})
