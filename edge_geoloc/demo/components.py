"""Look up the other components' public functions by name, failing clearly when one is not installed yet.

The demo only calls components through their public APIs (``docs/interfaces.md``); it never re-implements
them. When an API is missing, the step stops with ``ComponentUnavailableError`` naming the component and the
function, instead of producing made-up numbers.
"""

from __future__ import annotations

import importlib
from typing import Any


class ComponentUnavailableError(RuntimeError):
    """A component the demo needs is not available in this installation."""


def require(module: str, attr: str, component: str) -> Any:
    """``module.attr`` or a ComponentUnavailableError error that names ``component``."""
    try:
        mod = importlib.import_module(module)
    except ImportError as err:
        raise ComponentUnavailableError(f"component {component} not available: cannot import {module} ({err})") from err
    if not hasattr(mod, attr):
        raise ComponentUnavailableError(f"component {component} not available: {module} has no {attr!r}")
    return getattr(mod, attr)
