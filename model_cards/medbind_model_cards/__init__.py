"""Model cards: each card's template (`*.md`, package data) beside its renderer (`*.py`), and the licence terms every
card and dataset card derived from PhysioNet's credentialed data carries.

- `medbind_pretrained`: a pretrained MedBind folder's card, from its results.json.
- `medbind_clinical_prediction`: a prompt-tuned clinical-prediction model's card.
"""

# MIMIC-IV, MIMIC-CXR and MIMIC-IV-ECG, and whatever is derived from them (datasets, weights), may be shared only
# under PhysioNet's credentialed licence.
PHYSIONET_LICENSE = {
    "license": "other",
    "license_name": "physionet-credentialed-health-data-license-1.5.0",
    "license_link": "https://physionet.org/about/licenses/physionet-credentialed-health-data-license-150/",
}
