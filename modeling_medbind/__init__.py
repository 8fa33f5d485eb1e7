"""MedBind: chest X-rays, 12-lead ECGs and clinical text in one embedding space (MEDBind, arXiv 2403.12894).

Importing this package registers every MedBind class with the transformers Auto* factories, so `AutoConfig`,
`AutoModel`, `AutoProcessor` and `pipeline` resolve `model_type="medbind"` (and `"medbind_clinical_prediction"`)
without `trust_remote_code`. `register_for_auto_class` makes `save_pretrained` write each class's `auto_map` and copy
its code file, so a saved folder loads with `trust_remote_code=True` where this package is not installed.
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoImageProcessor,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoModelForZeroShotImageClassification,
    AutoProcessor,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_clinical_prediction import MedBindClinicalPredictionConfig
from .configuration_medbind import (
    CANONICAL_LEAD_NAMES,
    PAPER_CXR_MODEL_NAME,
    MedBindConfig,
    MedBindCXRConfig,
    MedBindECGConfig,
)
from .feature_extraction_medbind import MedBindECGFeatureExtractor
from .image_processing_medbind import MedBindImageProcessor
from .modeling_clinical_prediction import MedBindForClinicalPrediction
from .modeling_medbind import MedBindModel, MedBindOutput, MedBindPreTrainedModel
from .pipeline_medbind import PIPELINE_TASKS, MedBindFeatureExtractionPipeline, MedBindZeroShotClassificationPipeline
from .processing_medbind import MedBindProcessor
from .tokenization_medbind import BIOBERT_IDENTIFIER, load_text_tokenizer, truncate_words

# The embedding model, its processor and their remote code.
AutoConfig.register(MedBindConfig.model_type, MedBindConfig)
AutoModel.register(MedBindConfig, MedBindModel)
# pipeline("zero-shot-image-classification", model=folder) loads the model through this auto class.
AutoModelForZeroShotImageClassification.register(MedBindConfig, MedBindModel)
AutoImageProcessor.register(MedBindConfig, image_processor_classes={"torchvision": MedBindImageProcessor})
AutoFeatureExtractor.register(MedBindConfig, MedBindECGFeatureExtractor)
AutoProcessor.register(MedBindConfig, MedBindProcessor)
MedBindConfig.register_for_auto_class()
MedBindModel.register_for_auto_class("AutoModel")
MedBindImageProcessor.register_for_auto_class()
MedBindECGFeatureExtractor.register_for_auto_class()
MedBindProcessor.register_for_auto_class()

# In this process, pipeline(task, model=model, processor=processor) finds the tasks here; a saved folder names them in
# config.custom_pipelines for pipeline(task, model=folder, trust_remote_code=True).
for _task, _pipeline_class in PIPELINE_TASKS.items():
    PIPELINE_REGISTRY.register_pipeline(_task, pipeline_class=_pipeline_class, pt_model=AutoModel, type="multimodal")

# The prompt-tuning head (BERT + LoRA + MedBind embedding tokens): its auto_map lists AutoConfig, AutoModel and
# AutoModelForSequenceClassification.
AutoConfig.register(MedBindClinicalPredictionConfig.model_type, MedBindClinicalPredictionConfig)
AutoModel.register(MedBindClinicalPredictionConfig, MedBindForClinicalPrediction)
AutoModelForSequenceClassification.register(MedBindClinicalPredictionConfig, MedBindForClinicalPrediction)
MedBindClinicalPredictionConfig.register_for_auto_class()
MedBindForClinicalPrediction.register_for_auto_class("AutoModel")

__all__ = [
    "BIOBERT_IDENTIFIER",
    "CANONICAL_LEAD_NAMES",
    "PAPER_CXR_MODEL_NAME",
    "MedBindCXRConfig",
    "MedBindClinicalPredictionConfig",
    "MedBindConfig",
    "MedBindECGConfig",
    "MedBindECGFeatureExtractor",
    "MedBindFeatureExtractionPipeline",
    "MedBindForClinicalPrediction",
    "MedBindImageProcessor",
    "MedBindModel",
    "MedBindOutput",
    "MedBindPreTrainedModel",
    "MedBindProcessor",
    "MedBindZeroShotClassificationPipeline",
    "load_text_tokenizer",
    "truncate_words",
]
