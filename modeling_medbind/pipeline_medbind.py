"""MedBind pipelines: zero-shot classification of ECGs and chest X-rays, and embeddings of all three modalities.

Tasks (a saved MedBind folder serves them as remote code through `config.custom_pipelines`):
- `"zero-shot-ecg-classification"` and `"zero-shot-cxr-classification"`: [`MedBindZeroShotClassificationPipeline`].
- `"medbind-feature-extraction"`: [`MedBindFeatureExtractionPipeline`], for CXRs, ECGs and text alike (transformers'
  `"feature-extraction"` takes text only and returns token states, not the projected embedding).

A MedBind folder also serves transformers' own `"zero-shot-image-classification"` (the model returns CLIP's
`logits_per_image`), but that pipeline opens files with `transformers.image_utils.load_image`, which converts every
image to 8-bit RGB (a 16-bit radiograph loses its depth) and cannot read DICOM, and it takes one prompt per label,
where the paper averages several (its COVID prompts). `"zero-shot-cxr-classification"` has none of these limits.

This file imports only torch and transformers: the configuration imports it to name the tasks, so it must not import
the model or the processor back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import BatchFeature, Pipeline

from .configuration_medbind import PIPELINE_CLASS_NAMES

# The processor argument each modality goes in by.
MODALITY_INPUTS = {"cxr": "images", "ecg": "ecgs", "text": "text"}
TASK_MODALITIES = {"zero-shot-ecg-classification": "ecg", "zero-shot-cxr-classification": "cxr"}
# The paper's ECG prompt (Table A.1, zero-shot); for radiographs, the positive phrasing of its RSNA prompts.
DEFAULT_HYPOTHESIS_TEMPLATES = {"ecg": "This ECG shows {}.", "cxr": "Findings suggesting {}."}

CandidateLabels = Sequence[str] | Mapping[str, str | Sequence[str]]


def prompts_by_label(candidate_labels: CandidateLabels, hypothesis_template: str) -> dict[str, list[str]]:
    """`{label: [prompt, ...]}` in the order given: each label name put into `hypothesis_template` (one `{}`, e.g.
    `"This ECG shows {}."`), or a mapping's own prompt or prompts per label (the template is then not used). ValueError
    for no labels, a repeated label, a label without prompts, or a template without `{}`."""
    if isinstance(candidate_labels, str) or not candidate_labels:
        raise ValueError(f"candidate_labels must be a non-empty list of labels or a mapping, got {candidate_labels!r}")
    if isinstance(candidate_labels, Mapping):
        prompts = {
            label: [prompt] if isinstance(prompt, str) else list(prompt) for label, prompt in candidate_labels.items()
        }
    else:
        if "{}" not in hypothesis_template:
            raise ValueError(f"hypothesis_template must contain '{{}}' for the label, got {hypothesis_template!r}")
        if len(set(candidate_labels)) != len(candidate_labels):
            raise ValueError(f"candidate_labels has a label more than once: {list(candidate_labels)}")
        prompts = {label: [hypothesis_template.format(label)] for label in candidate_labels}
    empty = [label for label, label_prompts in prompts.items() if not label_prompts]
    if empty:
        raise ValueError(f"label(s) {empty} have no prompt")
    return prompts


def label_probabilities(logits: torch.Tensor, prompts_per_label: Sequence[int]) -> torch.Tensor:
    """Zero-shot class probabilities: each label's mean logit over its prompts, then a softmax over the labels.

    The paper averages the similarities of a sample with a class's prompts (its COVID prompts); a mean of logits is
    the same up to the temperature, which divides every similarity alike. `logits [n, n_prompts]` hold the prompts
    grouped by label, `prompts_per_label` consecutive columns each; the result is `[n, n_labels]`.
    """
    means = [columns.mean(dim=-1) for columns in logits.split(list(prompts_per_label), dim=-1)]
    return torch.stack(means, dim=-1).softmax(dim=-1)


def process_one(
    processor, modality: str, item: Any, sampling_rate: float | None = None, lead_names: Sequence[str] | None = None
) -> BatchFeature:
    """One radiograph, ECG or text (`modality`) -> a [`MedBindProcessor`]'s torch tensors for it, batch size
    1 (`sampling_rate`, `lead_names`: of an ECG array). The processor's errors name the file or record."""
    # In a list, an array is one input: a 3-D ECG array would otherwise be read as a batch.
    return processor(
        **{MODALITY_INPUTS[modality]: [item]}, sampling_rate=sampling_rate, lead_names=lead_names, return_tensors="pt"
    )


def _given(**parameters: Any) -> dict[str, Any]:
    """The parameters that were passed: a pipeline keeps its earlier values for the others."""
    return {name: value for name, value in parameters.items() if value is not None}


class MedBindPipeline(Pipeline):
    """What the MedBind pipelines share: they load the folder's [`MedBindProcessor`] and turn one input of a
    modality into model inputs with it (a file path, WFDB record, image or array is one input; a list is several)."""

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_video_processor = False

    def resolve_modality(self, modality: str | None) -> str:
        """The modality of this call: `modality` when given, else the one the task names."""
        modality = modality or TASK_MODALITIES.get(self.task)
        if modality not in MODALITY_INPUTS:
            raise ValueError(f"{type(self).__name__} needs modality= in {sorted(MODALITY_INPUTS)}, got {modality!r}")
        return modality

    def preprocess(self, item: Any, modality: str | None = None, **kwargs: Any) -> BatchFeature:
        """One input as model inputs (`process_one`), floating tensors in the model's dtype."""
        return process_one(self.processor, self.resolve_modality(modality), item, **kwargs).to(self.dtype)


class MedBindZeroShotClassificationPipeline(MedBindPipeline):
    """
    Zero-shot classification of ECGs (task `"zero-shot-ecg-classification"`) or chest X-rays (task
    `"zero-shot-cxr-classification"`): a softmax over the temperature-scaled cosine similarities of the input's
    embedding with one text prompt per label, or with the mean over several prompts per label.

    Example:

    ```python
    >>> from transformers import pipeline
    >>> classifier = pipeline("zero-shot-ecg-classification", model="path/to/medbind", trust_remote_code=True)
    >>> classifier("records/s0010_re", candidate_labels=["myocardial infarction", "normal sinus rhythm"])
    ```

    gives `[{"label": ..., "score": ...}, ...]`, the most probable label first.
    """

    _cached_prompts: tuple[tuple[str, ...], torch.Tensor] | None = None

    def __call__(self, inputs: Any, candidate_labels: CandidateLabels | None = None, **kwargs: Any) -> Any:
        """Classify one input or a list of them.

        Args:
            inputs: ECG: a WFDB record path (with or without `.hea`), a `wfdb.Record` or an array `[leads, samples]`
                (then pass `sampling_rate`, and `lead_names` unless the rows are in the model's lead order). CXR:
                an image path (PNG, JPEG, DICOM...), a PIL image or an array. A list gives a list of results.
            candidate_labels: label names, each put into `hypothesis_template`; or `{label: prompt or [prompts]}`
                (several prompts per label are averaged).
            hypothesis_template (`str`): default `"This ECG shows {}."` (the paper's) for ECGs, `"Findings
                suggesting {}."` for CXRs.
            sampling_rate (`float`), lead_names (`list[str]`): the rate in Hz and the rows' leads of ECG arrays.
            modality (`str`): `"ecg"` or `"cxr"`, for a pipeline built without one of the two tasks.

        Returns:
            Per input, `[{"label": ..., "score": ...}, ...]` sorted by decreasing score (scores sum to 1).
        """
        return super().__call__(inputs, candidate_labels=candidate_labels, **kwargs)

    def _sanitize_parameters(
        self,
        candidate_labels: CandidateLabels | None = None,
        hypothesis_template: str | None = None,
        sampling_rate: float | None = None,
        lead_names: Sequence[str] | None = None,
        modality: str | None = None,
        **kwargs: Any,
    ) -> tuple[dict, dict, dict]:
        preprocess = _given(sampling_rate=sampling_rate, lead_names=lead_names, modality=modality)
        labels = _given(candidate_labels=candidate_labels, hypothesis_template=hypothesis_template, modality=modality)
        return preprocess, labels, labels

    def _forward(
        self,
        model_inputs: BatchFeature,
        candidate_labels: CandidateLabels | None = None,
        hypothesis_template: str | None = None,
        modality: str | None = None,
    ) -> dict[str, torch.Tensor]:
        modality = self.resolve_modality(modality)
        prompts = self._prompts(candidate_labels, hypothesis_template, modality)
        embeds = self.model(**model_inputs)[f"{modality}_embeds"]
        text_embeds = self._prompt_embeddings(tuple(prompt for group in prompts.values() for prompt in group))
        return {"logits": self.model.similarity_logits(embeds, text_embeds)}

    def postprocess(
        self,
        model_outputs: dict[str, torch.Tensor],
        candidate_labels: CandidateLabels | None = None,
        hypothesis_template: str | None = None,
        modality: str | None = None,
    ) -> list[dict[str, Any]]:
        prompts = self._prompts(candidate_labels, hypothesis_template, self.resolve_modality(modality))
        scores = label_probabilities(model_outputs["logits"].float(), [len(group) for group in prompts.values()])[0]
        ranked = sorted(zip(prompts, scores.tolist()), key=lambda pair: -pair[1])
        return [{"label": label, "score": score} for label, score in ranked]

    @staticmethod
    def _prompts(candidate_labels: CandidateLabels | None, template: str | None, modality: str) -> dict[str, list[str]]:
        if candidate_labels is None:
            raise ValueError("zero-shot classification needs candidate_labels=")
        return prompts_by_label(candidate_labels, template or DEFAULT_HYPOTHESIS_TEMPLATES[modality])

    def _prompt_embeddings(self, prompts: tuple[str, ...]) -> torch.Tensor:
        # Every input of a call is compared with the same prompts: embed them once, not once per input.
        if self._cached_prompts is None or self._cached_prompts[0] != prompts:
            text = self.processor(text=list(prompts), return_tensors="pt").to(self.device)
            self._cached_prompts = (prompts, self.model.get_text_features(**text).pooler_output)
        return self._cached_prompts[1]


class MedBindFeatureExtractionPipeline(MedBindPipeline):
    """
    Embeddings of CXRs, ECGs or texts (task `"medbind-feature-extraction"`): the L2-normalised `projection_dim`
    vectors of the shared space, so a dot product of two of them is their cosine similarity.

    Example:

    ```python
    >>> from transformers import pipeline
    >>> embed = pipeline("medbind-feature-extraction", model="path/to/medbind", trust_remote_code=True)
    >>> ecg = embed("records/s0010_re", modality="ecg", return_tensors=True)  # tensor [256]
    >>> texts = embed(["Sinus rhythm.", "Atrial fibrillation."], modality="text")  # two lists of 256 floats
    ```
    """

    def __call__(self, inputs: Any, modality: str | None = None, **kwargs: Any) -> Any:
        """Embed one input or a list of inputs of one `modality`.

        Args:
            inputs: CXR: image path (PNG, JPEG, DICOM...), PIL image or array. ECG: WFDB record path, `wfdb.Record`
                or array `[leads, samples]`. Text: a string.
            sampling_rate (`float`), lead_names (`list[str]`): the rate in Hz and the rows' leads of ECG arrays.
            return_tensors (`bool`): return a tensor `[projection_dim]` per input instead of a list of floats.
        """
        return super().__call__(inputs, modality=modality, **kwargs)

    def _sanitize_parameters(
        self,
        modality: str | None = None,
        sampling_rate: float | None = None,
        lead_names: Sequence[str] | None = None,
        return_tensors: bool | None = None,
        **kwargs: Any,
    ) -> tuple[dict, dict, dict]:
        preprocess = _given(sampling_rate=sampling_rate, lead_names=lead_names, modality=modality)
        return preprocess, _given(modality=modality), _given(return_tensors=return_tensors)

    def _forward(self, model_inputs: BatchFeature, modality: str | None = None) -> dict[str, torch.Tensor]:
        return {"embeds": self.model(**model_inputs)[f"{self.resolve_modality(modality)}_embeds"]}

    def postprocess(self, model_outputs: dict[str, torch.Tensor], return_tensors: bool = False) -> Any:
        embeds = model_outputs["embeds"][0]
        return embeds if return_tensors else embeds.tolist()


PIPELINE_TASKS = {task: globals()[class_name] for task, class_name in PIPELINE_CLASS_NAMES.items()}

__all__ = [
    "DEFAULT_HYPOTHESIS_TEMPLATES",
    "MODALITY_INPUTS",
    "PIPELINE_TASKS",
    "MedBindFeatureExtractionPipeline",
    "MedBindPipeline",
    "MedBindZeroShotClassificationPipeline",
    "label_probabilities",
    "process_one",
    "prompts_by_label",
]
