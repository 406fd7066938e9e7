#!/usr/bin/env bash
# parquet-loader benchmarks (docs/benchmarks.md, "parquet-loader"): writes the Parquet files with
# DuckDB's Python package, builds the `load_bench` example in release mode (with the whole workspace's examples), and prints one JSON
# line per figure.
#   1. a 5-million-row file (50 row groups) loaded into DuckDB by the loader, against DuckDB's own
#      CREATE TABLE … AS SELECT * FROM read_parquet(…) on the same file, same run;
#   2. bytes the loader reads from a 1 MB and a 1 GB object (the footer only);
#   3. the PostgreSQL binary COPY path against `psql \copy` of the same rows from CSV, with peak
#      RSS, on the 1 GB file (PostgreSQL started here, in a temporary directory).
# Needs: ~/.cache/pulse-venv with `duckdb` (pip), PostgreSQL binaries (/usr/lib/postgresql/*/bin),
# psql, GNU time, ~8 GB of free disk in $BENCH_DIR and the temporary directory (files ~3 GB,
# PostgreSQL ~2.5 GB per copy of the 1 GB file's rows), on top of the 8 GB the machine keeps free.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
PYTHON=${PYTHON:-$HOME/.cache/pulse-venv/bin/python}
# What the script started or made, stopped and removed on exit.
PG_PID=
REMOVE=()
on_exit() {
  if [ -n "$PG_PID" ]; then kill "$PG_PID" 2>/dev/null; wait "$PG_PID" || true; fi
  rm -rf "${REMOVE[@]}"
}
trap on_exit EXIT
if [ -z "${BENCH_DIR:-}" ]; then
  BENCH_DIR=$(mktemp -d)
  REMOVE+=("$BENCH_DIR")  # ~4 GB of generated files; a BENCH_DIR given is kept
fi
PG_BIN=${PULSE_PG_BIN:-$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)}
echo "files in $BENCH_DIR" >&2

"$PYTHON" - "$BENCH_DIR" <<'PY'
import sys, duckdb
out = sys.argv[1]
con = duckdb.connect()
def write(name, rows, group):
    con.execute(f"""
        COPY (SELECT i AS id, md5(i::VARCHAR) AS name, i * 1.5 AS amount,
                     TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(i) AS event_time,
                     DATE '2024-01-01' + (i % 365)::INTEGER AS event_date
              FROM range({rows}) t(i))
        TO '{out}/{name}' (FORMAT parquet, ROW_GROUP_SIZE {group})""")
write("rows5m.parquet", 5_000_000, 100_000)
write("one_mb.parquet", 20_000, 10_000)
write("one_gb.parquet", 19_000_000, 1_000_000)
con.execute(f"COPY (SELECT * FROM '{out}/one_gb.parquet') TO '{out}/one_gb.csv' (HEADER false)")
PY
ls -l "$BENCH_DIR" >&2

# The same selection as every release benchmark here (DuckDB's C++ build is keyed on the package
# selection: a narrower one would compile it again, 25-40 minutes on 2 cores).
nice -n 15 cargo build --release --workspace --examples --locked
BENCH=$CARGO_TARGET_DIR/release/examples/load_bench

"$BENCH" duckdb "$BENCH_DIR/rows5m.parquet"
"$BENCH" footer "$BENCH_DIR/one_mb.parquet"
"$BENCH" footer "$BENCH_DIR/one_gb.parquet"

# PostgreSQL, as `nobody` when run as root (it refuses root).
PG_DIR=$(mktemp -d)
REMOVE+=("$PG_DIR")
RUN=()
if [ "$(id -u)" = 0 ]; then chown nobody "$PG_DIR"; RUN=(runuser -u nobody --); fi
"${RUN[@]}" "$PG_BIN/initdb" -U pulse --auth=trust -E UTF8 --no-sync -D "$PG_DIR/data" >/dev/null
PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${RUN[@]}" "$PG_BIN/postgres" -D "$PG_DIR/data" -p "$PORT" -k "$PG_DIR" \
    -c listen_addresses=127.0.0.1 -c fsync=off >/dev/null 2>&1 &
PG_PID=$!
URL="postgresql://pulse@127.0.0.1:$PORT/postgres"
for _ in $(seq 100); do psql "$URL" -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done

/usr/bin/time -f '{"mode": "postgres_rss", "max_rss_kb": %M}' "$BENCH" postgres "$BENCH_DIR/one_gb.parquet" "$URL"
# Room for the CSV copy: the loader's rows are counted, then dropped (PostgreSQL holds ~2.5 GB per
# copy of the 19 million rows), with the files nothing reads any more.
psql "$URL" -At -c 'SELECT count(*) FROM pulse.load_bench' | sed 's/^/{"mode": "postgres_rows_in_table", "rows": /; s/$/}/'
psql "$URL" -q -c 'DROP TABLE pulse.load_bench'
rm -f "$BENCH_DIR/rows5m.parquet" "$BENCH_DIR/one_mb.parquet"
psql "$URL" -q -c 'CREATE TABLE csv_copy (id bigint, name text, amount numeric(38, 9),
                                          event_time timestamptz, event_date date)'
start=$(date +%s.%N)
psql "$URL" -q -c "\\copy csv_copy FROM '$BENCH_DIR/one_gb.csv' CSV"
end=$(date +%s.%N)
rows=$(psql "$URL" -At -c 'SELECT count(*) FROM csv_copy')
"$PYTHON" -c "print({'mode': 'psql_copy_csv', 'rows': $rows, 'secs': $end - $start, 'rows_per_sec': $rows / ($end - $start)})"
