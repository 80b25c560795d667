"""The demo (``make demo``): an adapter publishes, services consume, a dead letter shows."""

import importlib.metadata
import re
import sys


def _missing() -> list[str]:
    """Simpul's own dependencies this interpreter lacks (all of them if Simpul is unknown)."""
    try:
        requires = importlib.metadata.requires("simpul") or []
    except importlib.metadata.PackageNotFoundError:
        return ["simpul"]
    missing = []
    for requirement in (r for r in requires if "extra ==" not in r):
        name = re.match(r"[A-Za-z0-9._-]+", requirement)
        try:
            importlib.metadata.distribution(name[0] if name else requirement)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name[0] if name else requirement)
    return missing


# `python -m demo` in a fresh clone before `make install` (or with the system's python3) would
# die on the first missing module, deep in a traceback: say what to do in one line instead.
# (Simpul's own metadata alone proves nothing: the clone's simpul.egg-info sits on sys.path.)
if missing := _missing():
    names = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
    sys.exit(
        f"python -m demo: this Python lacks Simpul's dependencies ({names}): run `make install` "
        "(or just `make demo`), then `.venv/bin/python -m demo`"
    )
