"""Tests of processing/medbind_processing/mimic_linking.py: the admission of a study, one-to-one matching."""

from datetime import datetime

import pandas as pd

from medbind_processing.mimic_linking import link_admissions, match_greedy


def test_link_admissions_uses_the_ed_stay_and_prefers_the_latest_admission():
    admissions = pd.DataFrame(
        {
            "subject_id": [1, 1],
            "hadm_id": [10, 11],
            "visit_start": pd.to_datetime(["2180-01-01 08:00", "2180-01-02 00:00"]),
            "dischtime": pd.to_datetime(["2180-01-03 00:00", "2180-01-04 00:00"]),
        }
    )
    times = [datetime(2180, 1, 1, 8), datetime(2180, 1, 2, 12), datetime(2180, 1, 5), datetime(2180, 1, 1, 9)]
    assert link_admissions([1, 1, 1, 2], times, admissions) == [10, 11, None, None]


def test_match_greedy_uses_each_row_once_best_first():
    assert match_greedy([(2.0, 0, 0), (1.0, 1, 0), (3.0, 0, 1)]) == [(0, 1), (1, 0)]
