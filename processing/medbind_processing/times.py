"""Times as the raw tables write them, as the datasets store them (ISO 8601 strings), and their differences."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd


def parse_time(value: Any, field: str = "time") -> datetime | None:
    """Parse a timestamp as the raw tables write it (ISO 8601 or `YYYY-MM-DD HH:MM:SS`, a `datetime`, or a blank:
    None, NaN, "") into a naive `datetime`, None for a blank; `field` names the column in the error message."""
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return None
    if isinstance(value, datetime):
        return value.to_pydatetime() if isinstance(value, pd.Timestamp) else value
    text = str(value).strip()
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{field}: expected an ISO 8601 time such as '2180-07-23 08:44:00', got {value!r}") from None


def to_iso(time: datetime | None) -> str | None:
    """`time` as an ISO 8601 string (`YYYY-MM-DDTHH:MM:SS`), None for None."""
    return None if time is None else time.isoformat()


def hours_apart(first: datetime, second: datetime) -> float:
    """Absolute difference between two times, in hours."""
    return abs((first - second).total_seconds()) / 3600.0
