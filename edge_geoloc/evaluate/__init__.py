"""Evaluation: retrieval metrics (R@k, AP) and localization errors. Import submodules directly."""
