#!/usr/bin/env python3
"""Writes the Parquet files of functions/parquet-loader/tests/writers/ with two other writers:
pyarrow and DuckDB's `COPY TO`. Run it again only to change them (the tests read the committed
files; they do not need Python):

    python3 -m venv ~/.cache/pulse-venv && ~/.cache/pulse-venv/bin/pip install pyarrow duckdb
    ~/.cache/pulse-venv/bin/python scripts/parquet-writers.py
"""
import datetime as dt
import decimal
import pathlib

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

OUT = pathlib.Path(__file__).resolve().parent.parent / "functions/parquet-loader/tests/writers"
OUT.mkdir(parents=True, exist_ok=True)
ROWS = 3000

utc = dt.timezone.utc
table = pa.table({
    "id": pa.array(range(ROWS), pa.int64()),
    "name": pa.array([f"name-{i % 7}" for i in range(ROWS)], pa.string()),  # dictionary pages
    "price": pa.array([decimal.Decimal(i) / 100 for i in range(ROWS)], pa.decimal128(12, 2)),
    "seen_at": pa.array([dt.datetime(2024, 5, 1, tzinfo=utc) + dt.timedelta(seconds=i) for i in range(ROWS)],
                        pa.timestamp("us", tz="UTC")),
    "local_time": pa.array([dt.datetime(2024, 5, 1) + dt.timedelta(minutes=i) for i in range(ROWS)],
                           pa.timestamp("ms")),
    "day": pa.array([dt.date(2024, 5, 1) + dt.timedelta(days=i % 30) for i in range(ROWS)], pa.date32()),
    "tags": pa.array([[f"t{i % 3}", "x"] if i % 5 else None for i in range(ROWS)], pa.list_(pa.string())),
    "point": pa.array([{"x": float(i), "y": None if i % 2 else -1.5} for i in range(ROWS)],
                      pa.struct([("x", pa.float64()), ("y", pa.float64())])),
    "attrs": pa.array([[("k", i)] for i in range(ROWS)], pa.map_(pa.string(), pa.int32())),
    "ok": pa.array([i % 2 == 0 for i in range(ROWS)], pa.bool_()),
    "blob": pa.array([bytes([i % 256]) * 3 for i in range(ROWS)], pa.binary()),
})
# Three row groups of 1000 rows, dictionary-encoded strings, zstd pages.
pq.write_table(table, OUT / "pyarrow_nested.parquet", row_group_size=1000, use_dictionary=True,
               compression="zstd")

# A column whose type conflicts with alltypes_plain.parquet's `id` (INTEGER there).
pq.write_table(pa.table({"id": pa.array([b"a", b"b"], pa.binary())}), OUT / "id_as_bytes.parquet")

con = duckdb.connect()
con.execute(f"""
    COPY (
        SELECT i::BIGINT AS id,
               'item-' || (i % 11) AS name,
               (i / 4)::DECIMAL(18, 3) AS amount,
               TIMESTAMPTZ '2024-05-01 00:00:00+00' + to_seconds(i) AS event_time,
               DATE '2024-05-01' + (i % 10)::INTEGER AS event_date,
               [i, i + 1] AS pair,
               {{'a': i, 'b': 'v' || i}} AS rec
        FROM range({ROWS}) t(i)
    ) TO '{OUT / "duckdb_copy.parquet"}' (FORMAT parquet, ROW_GROUP_SIZE 1024)
""")
for name in ("pyarrow_nested.parquet", "duckdb_copy.parquet", "id_as_bytes.parquet"):
    meta = pq.ParquetFile(OUT / name).metadata
    print(name, meta.num_rows, "rows,", meta.num_row_groups, "row groups")
