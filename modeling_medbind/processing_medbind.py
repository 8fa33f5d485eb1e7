"""MedBind processor: one object turning radiographs, ECGs and report texts into MedBind model inputs."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import BatchFeature, ProcessorMixin
from transformers.image_utils import ImageInput
from transformers.utils import TensorType

from .configuration_medbind import MAX_WORDS, MedBindConfig
from .feature_extraction_medbind import ECGInput, MedBindECGFeatureExtractor
from .image_processing_medbind import MedBindImageProcessor
from .tokenization_medbind import truncate_words


class MedBindProcessor(ProcessorMixin):
    r"""Wraps a [`MedBindImageProcessor`], a [`MedBindECGFeatureExtractor`] and a BERT tokenizer into one processor.

    Text follows the paper: each report is cut to its first `max_words` words, then tokenised (truncated at
    `max_length` tokens, padded to the longest in the batch).

    The processor of a model is built from its config with [`MedBindProcessor.from_config`] and saved beside it.

    Args:
        tokenizer ([`BertTokenizerFast`]): BioBERT's, or one from `train_wordpiece_tokenizer` offline.
        max_words (`int`): word limit applied before tokenising (100 in the paper).
    """

    def __init__(
        self,
        image_processor: MedBindImageProcessor,
        feature_extractor: MedBindECGFeatureExtractor,
        tokenizer,
        max_words: int = MAX_WORDS,
        max_length: int = 256,
        **kwargs,
    ):
        if max_words < 1 or max_length < 1:
            raise ValueError(f"max_words and max_length must be positive, got {max_words} and {max_length}")
        self.max_words = max_words
        self.max_length = max_length
        super().__init__(image_processor, feature_extractor, tokenizer, **kwargs)

    @classmethod
    def from_config(
        cls,
        config: MedBindConfig,
        tokenizer,
        image_processor_kwargs: dict | None = None,
        feature_extractor_kwargs: dict | None = None,
        **kwargs,
    ) -> MedBindProcessor:
        """The processor a model with `config` takes: every input setting comes from the config, none is typed twice.

        - Radiographs: as `cxr_config.preprocessing` says (`MedBindImageProcessor.from_cxr_config`): timm's
          evaluation preprocessing of `cxr_config.model_name` (its interpolation, its crop ratio and its
          `pretrained_cfg` mean / std), or MedCLIP's; centre-cropped to `cxr_config.image_size`.
        - ECGs: `ecg_config.lead_names` in that order, `ecg_config.num_samples` at `ecg_config.sampling_rate` Hz.

        `image_processor_kwargs` and `feature_extractor_kwargs` set their other settings; `**kwargs` are
        `max_words`, `max_length`.
        """
        ecg = config.ecg_config
        image_processor = MedBindImageProcessor.from_cxr_config(config.cxr_config, **(image_processor_kwargs or {}))
        feature_extractor = MedBindECGFeatureExtractor(
            sampling_rate=ecg.sampling_rate,
            num_samples=ecg.num_samples,
            lead_names=ecg.lead_names,
            **(feature_extractor_kwargs or {}),
        )
        return cls(image_processor, feature_extractor, tokenizer, **kwargs)

    def __call__(
        self,
        images: ImageInput | None = None,
        ecgs: ECGInput | Sequence[ECGInput] | None = None,
        text: str | Sequence[str] | None = None,
        sampling_rate: float | None = None,
        lead_names: Sequence[str] | None = None,
        return_tensors: str | TensorType | None = None,
        **tokenizer_kwargs,
    ) -> BatchFeature:
        """Prepare whichever of the three modalities are given (`sampling_rate`, `lead_names`: of ECG arrays;
        `**tokenizer_kwargs` override the tokenizer call).

        Returns:
            `BatchFeature` with `pixel_values [B, 3, crop, crop]` for images, `ecg_values [B, leads, samples]` for
            ECGs, and `input_ids`, `attention_mask` `[B, L]` for text: what `MedBindModel.forward` takes, as in
            `model(**processor(images=..., ecgs=..., text=..., return_tensors="pt"))`.
        """
        if images is None and ecgs is None and text is None:
            raise ValueError("MedBindProcessor needs at least one of images=, ecgs= or text=")
        data = {}
        if images is not None:
            data.update(self.image_processor(images, return_tensors=return_tensors))
        if ecgs is not None:
            data.update(
                self.feature_extractor(
                    ecgs, sampling_rate=sampling_rate, lead_names=lead_names, return_tensors=return_tensors
                )
            )
        if text is not None:
            reports = [text] if isinstance(text, str) else list(text)
            truncated = [
                truncate_words(report, self.max_words, name=f"report {index}") for index, report in enumerate(reports)
            ]
            tokenizer_kwargs = {
                "padding": "longest",
                "truncation": True,
                "max_length": self.max_length,
                # BERT's segment ids are all zero for single reports and the text tower does not take them.
                "return_token_type_ids": False,
                **tokenizer_kwargs,
            }
            data.update(self.tokenizer(truncated, return_tensors=return_tensors, **tokenizer_kwargs))
        return BatchFeature(data, tensor_type=return_tensors)
