"""Tests of processing/medbind_processing/tables.py: reading the raw CSV tables."""

import pandas as pd
import pytest

from medbind_processing.tables import read_table


def test_read_table_finds_gzipped_tables_and_names_missing_columns(tmp_path):
    pd.DataFrame({"a": [1], "b": [2]}).to_csv(tmp_path / "t.csv.gz", index=False)
    assert list(read_table(tmp_path, "t.csv", ["a"])["b"]) == [2]
    with pytest.raises(ValueError, match=r"t.csv.gz: missing column\(s\) \['c'\]"):
        read_table(tmp_path, "t.csv", ["a", "c"])
    with pytest.raises(FileNotFoundError, match=r"table u.csv \(or u.csv.gz\) not found"):
        read_table(tmp_path, "u.csv", ["a"])
