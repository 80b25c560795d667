"""``python -m services.monitor``: serve the operator dashboard (see services.monitor.cli)."""

from services.monitor.cli import main

if __name__ == "__main__":  # the service catalogue imports every module of services/
    main()
