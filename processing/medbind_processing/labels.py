"""The class names the builders share: CheXpert's observations and the ECG diagnostic superclasses."""

# CheXpert's 14 observations, in the column order of the label CSVs of CheXpert and MIMIC-CXR-JPG.
CHEXPERT_LABELS = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture", "Lung Lesion",
    "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia", "Pneumothorax", "Support Devices",
)
# The five findings of the CheXpert competition (CheXpert 5x200's classes), in GLoRIA's and MedCLIP's order.
CHEXPERT_COMPETITION_FINDINGS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
# The five diagnostic ECG superclasses (PTB-XL's, reused by the MIMIC-IV-ECG rules), in the paper's order (Section 3,
# Table A.4).
ECG_SUPERCLASSES = ("NORM", "HYP", "STTC", "MI", "CD")
