"""Starts PyPI's bqemulator without network access.

bqemulator insists on installing DuckDB's spatial extension at start-up (for GEOGRAPHY) and fails
when extensions.duckdb.org is unreachable. Pulse never uses GEOGRAPHY, so this wrapper skips that
loader (and the Avro one, which only warns) and then runs the emulator's own command line unchanged, e.g.

    python scripts/bqemulator-offline.py start --rest-port 9050 --project pulse-local
"""

import sys

from bqemulator.storage.engine import DuckDBEngine

DuckDBEngine._load_spatial = lambda self: None  # GEOGRAPHY is the only thing that needs it.
DuckDBEngine._load_format_extensions = lambda self: None  # Avro loads: unused, and offline too.

from bqemulator.cli import main  # noqa: E402  (imported after the patch on purpose)

sys.exit(main())
