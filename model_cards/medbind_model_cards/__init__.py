"""Model card templates (package data, read with `importlib.resources`)."""
