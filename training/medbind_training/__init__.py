"""MedBind training: pretraining, evaluation and prompt tuning, the library behind the scripts in `training/`."""
