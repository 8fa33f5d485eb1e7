"""MedBind's pipeline stages as one installed package.

The repository keeps the design's folders (`processing/`, `training/`, `model_cards/`); installed, they are
`medbind.processing`, `medbind.training` and `medbind.model_cards`, so that MedBind never claims top-level names as
common as `processing` or `training`. The model itself (the Hub remote code) is the separate package
`modeling_medbind`.
"""
