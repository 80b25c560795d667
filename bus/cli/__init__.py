"""The ``simpul`` command: one module per command group, assembled in :mod:`bus.cli.app`."""
