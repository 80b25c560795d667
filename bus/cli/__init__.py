"""The ``simpul`` command: one module per command group, assembled in :mod:`bus.cli.app`.

What is exported here is the plugin API: a package adds its own command group to ``simpul`` with
a typer app named in the ``simpul.commands`` entry-point group (``services.audit.cli:app``), and
uses these helpers to load targets, contracts and report errors as the built-in commands do.
"""

from typing import TYPE_CHECKING

from bus._lazy import exports

if TYPE_CHECKING:
    from bus.cli.common import activate_command, fail, import_from_cwd, import_target
    from bus.cli.contracts import load as load_contracts

_EXPORTS = {
    "activate_command": ("bus.cli.common", "activate_command"),
    "fail": ("bus.cli.common", "fail"),
    "import_from_cwd": ("bus.cli.common", "import_from_cwd"),
    "import_target": ("bus.cli.common", "import_target"),
    "load_contracts": ("bus.cli.contracts", "load"),
}

__all__ = [
    "activate_command",
    "fail",
    "import_from_cwd",
    "import_target",
    "load_contracts",
]

__getattr__, __dir__ = exports(globals(), _EXPORTS)
