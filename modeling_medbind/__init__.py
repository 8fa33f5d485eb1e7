"""MedBind: chest X-rays, 12-lead ECGs and clinical text in one embedding space (MEDBind, arXiv 2403.12894).

Importing this package registers every MedBind class with the transformers Auto* factories, so
`AutoConfig`, `AutoModel` and `AutoProcessor` resolve `model_type="medbind"` without `trust_remote_code`.
"""

from transformers import AutoConfig, AutoModel

from .configuration_medbind import MedBindCXRConfig, MedBindConfig, MedBindECGConfig
from .losses import emcl_loss, tmcl_loss
from .modeling_medbind import MedBindModel, MedBindOutput, MedBindPreTrainedModel

AutoConfig.register(MedBindConfig.model_type, MedBindConfig)
AutoModel.register(MedBindConfig, MedBindModel)
# save_pretrained then writes `auto_map` and copies the code files, so the Hub folder loads with trust_remote_code.
MedBindConfig.register_for_auto_class()
MedBindModel.register_for_auto_class("AutoModel")

# --- processor (issue 4) ---
from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoProcessor  # noqa: E402

from .feature_extraction_medbind import MedBindECGFeatureExtractor  # noqa: E402
from .image_processing_medbind import MedBindImageProcessor  # noqa: E402
from .processing_medbind import MedBindProcessor  # noqa: E402
from .tokenization_medbind import load_text_tokenizer, train_wordpiece_tokenizer, truncate_words  # noqa: E402

AutoImageProcessor.register(MedBindConfig, image_processor_classes={"torchvision": MedBindImageProcessor})
AutoFeatureExtractor.register(MedBindConfig, MedBindECGFeatureExtractor)
AutoProcessor.register(MedBindConfig, MedBindProcessor)
# save_pretrained then writes each part's `auto_map` and copies its code, so a saved processor folder loads with
# AutoProcessor.from_pretrained(folder, trust_remote_code=True) where this package is not installed.
MedBindImageProcessor.register_for_auto_class()
MedBindECGFeatureExtractor.register_for_auto_class()
MedBindProcessor.register_for_auto_class()
# --- end processor ---

__all__ = [
    "MedBindCXRConfig",
    "MedBindConfig",
    "MedBindECGConfig",
    "MedBindECGFeatureExtractor",
    "MedBindImageProcessor",
    "MedBindModel",
    "MedBindOutput",
    "MedBindPreTrainedModel",
    "MedBindProcessor",
    "emcl_loss",
    "load_text_tokenizer",
    "tmcl_loss",
    "train_wordpiece_tokenizer",
    "truncate_words",
]
