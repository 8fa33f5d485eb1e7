"""MedBind training: pretraining entry point, Trainer, batches, retrieval evaluation, model cards."""
