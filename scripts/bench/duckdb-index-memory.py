#!/usr/bin/env python3
"""How much memory DuckDB's primary-key index takes per row, and what a `memory_limit` does to it.

The local warehouse keys every table on its row id (a VARCHAR), so DuckDB keeps an ART index of
every id. This inserts random UUID ids in batches into a table shaped like that, in a fresh
database file, and prints DuckDB's own memory count (`duckdb_memory()`) and the process's RSS as
the rows grow. With `--memory-limit` it shows whether the index can be evicted under the limit
(the run ends at the first failed insert, with DuckDB's error).

  ~/.cache/pulse-venv/bin/python scripts/bench/duckdb-index-memory.py --rows 2000000
  ~/.cache/pulse-venv/bin/python scripts/bench/duckdb-index-memory.py --memory-limit 64MB

Needs the `duckdb` Python package (the emulators' virtualenv has it: bqemulator depends on it).
"""

import argparse
import os
import tempfile
import uuid

import duckdb

BATCH = 50_000


def rss_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--memory-limit", help="DuckDB's memory_limit, e.g. 64MB (default: DuckDB's)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as work:
        con = duckdb.connect(os.path.join(work, "index.duckdb"))
        if args.memory_limit:
            con.execute(f"SET memory_limit = '{args.memory_limit}'")
        limit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        print(f"duckdb {duckdb.__version__}, memory_limit {limit}")
        con.execute("CREATE TABLE events (row_id VARCHAR PRIMARY KEY, payload VARCHAR)")
        print("rows,rss_mib,art_index_mib,base_table_mib")
        for done in range(BATCH, args.rows + 1, BATCH):
            ids = [str(uuid.uuid4()) for _ in range(BATCH)]
            try:
                con.execute("INSERT INTO events SELECT unnest($1), 'x'", [ids])
            except duckdb.Error as err:
                print(f"insert of rows {done - BATCH}..{done} failed: {str(err).splitlines()[0]}")
                return 1
            if done % (4 * BATCH) == 0:
                memory = dict(
                    con.execute(
                        "SELECT tag, memory_usage_bytes / 2^20 FROM duckdb_memory() "
                        "WHERE tag IN ('ART_INDEX', 'BASE_TABLE')"
                    ).fetchall()
                )
                print(
                    f"{done},{rss_mib():.0f},{memory.get('ART_INDEX', 0):.1f},"
                    f"{memory.get('BASE_TABLE', 0):.1f}",
                    flush=True,
                )
        con.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
