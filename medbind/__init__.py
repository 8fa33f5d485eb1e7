"""The `medbind` command (`medbind/cli.py`).

The pipeline stages install as packages of their own, each in its design folder: `medbind_processing`
(`processing/`), `medbind_training` (`training/`) and `medbind_model_cards` (`model_cards/`); the model itself, the Hub
remote code, is `modeling_medbind`.
"""
