"""Dataset builders: raw PhysioNet / Kaggle downloads (or the synthetic demo) -> `datasets.DatasetDict`s.

One module per source, each a plain function `build_<source>(root, ...)` and a command line
`python -m medbind_processing.<source> --root RAW_DIR --out OUT_DIR` (see processing/README.md). Every builder takes
`build_dir` (where the Arrow files stay until saved, `building.build_dataset_dict`; None: in memory); the radiograph
builders also `shortest_edge` (`radiographs.stored_radiograph`; 0 or None: paths into the download) and `num_proc`
(processes decoding and shrinking the images). Bad raw data raises FileNotFoundError or ValueError naming the file,
record or field.
"""
