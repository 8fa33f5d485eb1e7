"""Dataset builders: raw PhysioNet / Kaggle downloads (or the synthetic demo) -> `datasets.DatasetDict`s.

One module per source, each a plain function `build_<source>(root, ...)` and a command line
`python -m medbind_processing.<source> --root RAW_DIR --out OUT_DIR` (see processing/README.md).
"""
