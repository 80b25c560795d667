"""Faces that import what they export only when it is first asked for (PEP 562).

``import bus`` must stay light for an adapter that only publishes: the service side alone pulls
in FastStream, uvicorn and Starlette. A face lists its names here and imports them under
``TYPE_CHECKING`` for type checkers; the first attribute access imports the one module that
defines it and caches the value in the face's namespace.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(
    namespace: dict[str, Any], names: Mapping[str, tuple[str, str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for the face whose ``globals()`` is ``namespace``: ``names``
    maps each exported name to (defining module, attribute there)."""
    face = namespace["__name__"]

    def getattr_(name: str) -> Any:
        try:
            module, attribute = names[name]
        except KeyError:
            raise AttributeError(f"module {face!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), attribute)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(names))

    return getattr_, dir_
