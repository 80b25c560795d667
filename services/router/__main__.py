"""``python -m services.router``: the same as ``simpul router run`` (SIMPUL_TOPOLOGY names the
topology, SIMPUL_REDIS_URL the router principal)."""

import subprocess
import sys

if __name__ == "__main__":
    sys.exit(subprocess.call([sys.executable, "-m", "bus.cli.app", "router", "run", *sys.argv[1:]]))
