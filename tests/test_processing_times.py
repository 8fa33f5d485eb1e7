"""Tests of processing/medbind_processing/times.py: timestamps as the raw tables write them."""

from datetime import datetime

import pandas as pd
import pytest

from medbind_processing.times import parse_time


def test_parse_time_reads_iso_and_blanks():
    assert parse_time("2180-07-23 08:44:00") == datetime(2180, 7, 23, 8, 44)
    assert parse_time(pd.Timestamp("2180-07-23T08:44:00")) == datetime(2180, 7, 23, 8, 44)
    assert parse_time(float("nan")) is None and parse_time("") is None
    with pytest.raises(ValueError, match="ecg_time"):
        parse_time("yesterday", "ecg_time")
