"""MedBind's pipelines (modeling_medbind/pipeline_medbind.py): zero-shot ECG and CXR classification, embeddings of the
three modalities, transformers' zero-shot image pipeline, and all of them from a saved folder as remote code."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from samples import write_record
from transformers import pipeline

from modeling_medbind.pipeline_medbind import label_probabilities, prompts_by_label

LABELS = ["myocardial infarction", "normal sinus rhythm"]


def ecg(seed: int, seconds: float = 10.0, sampling_rate: int = 500) -> np.ndarray:
    """A 12-lead signal `[12, samples]` in mV."""
    return np.random.default_rng(seed).normal(size=(12, int(seconds * sampling_rate)))


def radiograph(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (64, 80), dtype=np.uint8)


def zero_shot(loaded, task: str = "zero-shot-ecg-classification"):
    model, processor = loaded
    return pipeline(task, model=model, processor=processor, device="cpu")


def test_ecg_zero_shot_scores_are_the_softmax_of_the_models_logits_with_the_papers_prompt(loaded):
    model, processor = loaded
    result = zero_shot(loaded)(ecg(0), sampling_rate=500, candidate_labels=LABELS)
    prompts = [f"This ECG shows {label}." for label in LABELS]
    with torch.no_grad():
        logits = model(**processor(ecgs=ecg(0), sampling_rate=500, text=prompts, return_tensors="pt")).logits_per_ecg
    expected = dict(zip(LABELS, logits.softmax(dim=-1)[0].tolist()))
    assert [entry["label"] for entry in result] == sorted(expected, key=expected.get, reverse=True)
    for entry in result:
        assert entry["score"] == pytest.approx(expected[entry["label"]], abs=1e-6)


def test_several_prompts_per_label_are_averaged_before_the_softmax(loaded):
    model, processor = loaded
    prompts = {"MI": ["This ECG shows myocardial infarction.", "Acute inferior myocardial infarction."],
               "NORM": "Sinus rhythm."}  # fmt: skip
    result = zero_shot(loaded)(ecg(1), sampling_rate=500, candidate_labels=prompts)
    texts = prompts["MI"] + [prompts["NORM"]]
    with torch.no_grad():
        logits = model(**processor(ecgs=ecg(1), sampling_rate=500, text=texts, return_tensors="pt")).logits_per_ecg
    expected = torch.stack([logits[0, :2].mean(), logits[0, 2]]).softmax(dim=0)
    scores = {entry["label"]: entry["score"] for entry in result}
    assert [scores["MI"], scores["NORM"]] == pytest.approx(expected.tolist(), abs=1e-6)


def test_a_batched_call_gives_each_input_its_own_scores(loaded):
    classifier = zero_shot(loaded)
    signals = [ecg(seed) for seed in range(3)]
    batched = classifier(signals, sampling_rate=500, candidate_labels=LABELS, batch_size=2)
    one_by_one = [classifier(signal, sampling_rate=500, candidate_labels=LABELS) for signal in signals]
    assert len(batched) == 3
    for got, expected in zip(batched, one_by_one):
        assert [entry["label"] for entry in got] == [entry["label"] for entry in expected]
        assert [entry["score"] for entry in got] == pytest.approx([entry["score"] for entry in expected], abs=1e-5)


def test_cxr_zero_shot_task_classifies_images(loaded):
    model, processor = loaded
    classifier = zero_shot(loaded, "zero-shot-cxr-classification")
    result = classifier(radiograph(0), candidate_labels=["pneumonia", "cardiomegaly"])
    prompts = ["Findings suggesting pneumonia.", "Findings suggesting cardiomegaly."]
    with torch.no_grad():
        logits = model(**processor(images=radiograph(0), text=prompts, return_tensors="pt")).logits_per_cxr
    expected = dict(zip(["pneumonia", "cardiomegaly"], logits.softmax(dim=-1)[0].tolist()))
    assert {entry["label"]: entry["score"] for entry in result} == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("modality", ["cxr", "ecg", "text"])
def test_feature_extraction_gives_the_get_features_embedding_of_each_modality(loaded, modality):
    model, processor = loaded
    embed = pipeline("medbind-feature-extraction", model=model, processor=processor, device="cpu")
    item = {"cxr": radiograph(1), "ecg": ecg(2), "text": "Sinus rhythm. Inferior myocardial infarction."}[modality]
    extra = {"sampling_rate": 500} if modality == "ecg" else {}
    vector = embed(item, modality=modality, return_tensors=True, **extra)
    as_list = embed(item, modality=modality, **extra)
    inputs = processor(**{{"cxr": "images", "ecg": "ecgs", "text": "text"}[modality]: [item]}, **extra,
                       return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        expected = getattr(model, f"get_{modality}_features")(*inputs.values()).pooler_output[0]
    assert vector.shape == (model.config.projection_dim,) and isinstance(as_list, list)
    torch.testing.assert_close(vector, expected)
    assert as_list == pytest.approx(expected.tolist(), abs=1e-6)


def test_an_unreadable_record_is_named_in_the_error(loaded, tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "missing.hea")):
        zero_shot(loaded)(str(tmp_path / "missing"), candidate_labels=LABELS)


def test_missing_labels_or_modality_are_explained(loaded):
    model, processor = loaded
    with pytest.raises(ValueError, match="candidate_labels"):
        zero_shot(loaded)(ecg(0), sampling_rate=500)
    embed = pipeline("medbind-feature-extraction", model=model, processor=processor, device="cpu")
    with pytest.raises(ValueError, match="modality="):
        embed("Sinus rhythm.")


def test_label_probabilities_average_each_labels_prompts():
    logits = torch.tensor([[1.0, 3.0, 0.0], [0.0, 0.0, 4.0]])
    expected = torch.tensor([[2.0, 0.0], [0.0, 4.0]]).softmax(dim=-1)
    torch.testing.assert_close(label_probabilities(logits, [2, 1]), expected)


@pytest.mark.parametrize(
    "labels, template, message",
    [([], "{}", "non-empty"), (["a", "a"], "{}", "more than once"), (["a"], "no placeholder", "{}"),
     ({"a": []}, "{}", "no prompt"), ("a", "{}", "non-empty list")],
)  # fmt: skip
def test_bad_labels_are_rejected(labels, template, message):
    with pytest.raises(ValueError, match=message):
        prompts_by_label(labels, template)


@pytest.mark.slow
def test_pipelines_run_from_the_saved_folder_where_medbind_is_not_importable(
    model_dir, loaded, tmp_path, run_without_medbind
):
    record = write_record(tmp_path, "rec", ecg(0), 500)
    png = tmp_path / "cxr.png"
    Image.fromarray(radiograph(3)).save(png)
    run_without_medbind(
        f"""
import json
from transformers import pipeline
folder, out = {str(model_dir)!r}, {str(tmp_path / "remote.json")!r}
image = pipeline("zero-shot-image-classification", model=folder, trust_remote_code=True)
ecg = pipeline("zero-shot-ecg-classification", model=folder, trust_remote_code=True)
cxr = pipeline("zero-shot-cxr-classification", model=folder, trust_remote_code=True)
embed = pipeline("medbind-feature-extraction", model=folder, trust_remote_code=True)
assert all(type(p).__module__.startswith("transformers_modules") for p in (ecg, cxr, embed))
assert type(image.model).__module__.startswith("transformers_modules"), type(image.model).__module__
labels = ["pneumonia", "cardiomegaly"]
results = {{
    "image": image({str(png)!r}, candidate_labels=labels, hypothesis_template="Findings suggesting {{}}."),
    "cxr": cxr({str(png)!r}, candidate_labels=labels),
    "ecg": ecg({str(record)!r}, candidate_labels={LABELS!r}),
    "embeddings": [embed({str(png)!r}, modality="cxr"), embed({str(record)!r}, modality="ecg"),
                   embed("Sinus rhythm.", modality="text")],
}}
json.dump(results, open(out, "w"))
"""
    )
    remote = json.loads((tmp_path / "remote.json").read_text())
    model, processor = loaded
    labels = ["pneumonia", "cardiomegaly"]
    prompts = [f"Findings suggesting {label}." for label in labels]
    with torch.no_grad():
        cxr = model(**processor(images=str(png), text=prompts, return_tensors="pt")).logits_per_cxr.softmax(-1)[0]
        ecg_ = model(**processor(ecgs=str(record), text=[f"This ECG shows {label}." for label in LABELS],
                                 return_tensors="pt")).logits_per_ecg.softmax(-1)[0]  # fmt: skip
        embeddings = [
            model.get_cxr_features(processor(images=str(png), return_tensors="pt")["pixel_values"]).pooler_output[0],
            model.get_ecg_features(processor(ecgs=str(record), return_tensors="pt")["ecg_values"]).pooler_output[0],
            model.get_text_features(**processor(text=["Sinus rhythm."], return_tensors="pt")).pooler_output[0],
        ]
    for name in ("image", "cxr"):  # the stock pipeline reads an 8-bit PNG as the processor does
        assert {entry["label"]: entry["score"] for entry in remote[name]} == pytest.approx(
            dict(zip(labels, cxr.tolist())), abs=1e-5
        )
    assert {entry["label"]: entry["score"] for entry in remote["ecg"]} == pytest.approx(
        dict(zip(LABELS, ecg_.tolist())), abs=1e-5
    )
    for got, expected in zip(remote["embeddings"], embeddings):
        assert got == pytest.approx(expected.tolist(), abs=1e-5)
