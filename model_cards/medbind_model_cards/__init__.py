"""Model cards: each card's template (`*.md`, package data) beside its renderer (`*.py`). Weights trained on
PhysioNet's credentialed data carry its licence, `medbind_processing.licenses`.

- `medbind_pretrained`: a pretrained MedBind folder's card, from its results.json.
- `medbind_clinical_prediction`: a prompt-tuned clinical-prediction model's card.
"""
