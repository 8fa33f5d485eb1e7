"""MedBind training: pretraining entry point, Trainer, batches, evaluation, prompt tuning, model cards."""

NONE_STRINGS = frozenset({"none", "None", ""})  # what a command line passes for "no value" (`--text_backbone none`)


def optional_argument(value: str | None) -> str | None:
    """A command-line value, or None where it is absent or says none (`NONE_STRINGS`)."""
    return None if value is None or value in NONE_STRINGS else value
