"""training/prompt_tune.py: visits to model inputs, the three modes end to end on a small demo, the Hub upload."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import medbind_training.embedding
import pytest
import torch
from medbind_processing.demo import save_demo
from medbind_model_cards.medbind_clinical_prediction import render_model_card
from medbind_training.prompt_tuning import main
from medbind_training.prompt_tuning import parse_prompt_tuning_arguments as parse_arguments
from medbind_training.baselines import load_baseline
from medbind_training.prompt_tuning_data import StudyEmbeddings, VisitCollator, tokenize_visits
from medbind_training.results_keys import prompt_tuning_rows
from safetensors.torch import load_file
from fake_hub import AGENT_REGISTRY, REPO_ID, TOKEN, FakeHub, serving
from tiny_medbind import save_tiny_medbind
from transformers import AutoModel

from medbind_training.tokenizer import train_wordpiece_tokenizer

from modeling_medbind import MedBindClinicalPredictionConfig, MedBindForClinicalPrediction

METRICS = ("accuracy", "balanced_accuracy")  # AUROC too where the test split holds both classes


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """
    A 60-patient synthetic demo (outcomes/, cxr/, ecg/) and two randomly initialised tiny MedBind folders with their
    processors: `medbind-bd` and `ecg-clip` (which has no CXR tower, so an encoder zoo can only take its ECG).
    """
    root = tmp_path_factory.mktemp("prompt-tune")
    save_demo(root / "data", num_patients=60, seed=0)
    save_tiny_medbind(root / "medbind-bd")
    save_tiny_medbind(root / "ecg-clip", variant="ecg-clip")
    return root


def run(world: Path, mode: str, output: str, *extra: str) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny models run faster on one thread than on contended ones
    try:
        return main(
            [
                "--task", "mortality", "--mode", mode, "--dataset_dir", str(world / "data"),
                "--medbind_model", str(world / "medbind-bd"),
                "--zoo_cxr_model", str(world / "medbind-bd"), "--zoo_ecg_model", str(world / "ecg-clip"),
                "--text_backbone", "none", "--output_dir", str(world / output), "--num_train_epochs", "1",
                "--per_device_train_batch_size", "8", "--use_cpu", "true", *extra,
            ]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(world) -> dict[str, dict]:
    """`main` once per mode; `{mode: results}`."""
    return {mode: run(world, mode, f"out-{mode}") for mode in ("medbind", "text-only", "encoder-zoo")}


def test_study_embeddings_are_looked_up_by_id_and_absent_ids_are_zero():
    table = StudyEmbeddings({11: 0, 12: 1}, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    embeds, present = table.lookup([12, None, 99, 11])
    assert present.tolist() == [True, False, False, True]
    assert embeds.tolist() == [[0.0, 1.0], [0.0, 0.0], [0.0, 0.0], [1.0, 0.0]]


def test_collator_pads_text_and_stacks_each_modality_in_the_models_order():
    tokenizer = train_wordpiece_tokenizer(["Male patient admitted", "Female patient"], vocab_size=64)
    embeddings = {"cxr": StudyEmbeddings({1: 0}, torch.full((1, 3), 1.0)),
                  "ecg": StudyEmbeddings({2: 0}, torch.full((1, 3), 2.0))}  # fmt: skip
    visits = [
        {**tokenizer("Male patient admitted"), "labels": 1, "cxr_study_id": 1, "ecg_study_id": None},
        {**tokenizer("Female patient"), "labels": 0, "cxr_study_id": None, "ecg_study_id": 2},
    ]
    batch = VisitCollator(tokenizer, embeddings)(visits)
    assert batch["modality_mask"].tolist() == [[1, 0], [0, 1]]
    assert batch["modality_embeds"][:, :, 0].tolist() == [[1.0, 0.0], [0.0, 2.0]]
    assert batch["labels"].tolist() == [1, 0]
    assert batch["attention_mask"].tolist()[1][-1] == 0  # right padding: the model appends after the text
    assert "modality_embeds" not in VisitCollator(tokenizer)(visits)


def test_text_only_appends_the_visits_reports_as_the_second_segment():
    tokenizer = train_wordpiece_tokenizer(["Male patient. Cardiomegaly. Sinus rhythm."], vocab_size=128)
    batch = {"mortality_text": ["Male patient.", "Male patient."], "mortality": [1, 0],
             "cxr_text": ["Cardiomegaly.", None], "ecg_text": ["Sinus rhythm.", None]}  # fmt: skip
    text_only = tokenize_visits(batch, tokenizer, "mortality", "text-only", max_length=64)
    decoded = tokenizer.decode(text_only["input_ids"][0])
    assert decoded == "[CLS] Male patient. [SEP] Cardiomegaly. [SEP] Sinus rhythm. [SEP]"
    assert set(text_only["token_type_ids"][0][text_only["input_ids"][0].index(tokenizer.sep_token_id) + 1 :]) == {1}
    assert tokenizer.decode(text_only["input_ids"][1]) == "[CLS] Male patient. [SEP]"
    medbind = tokenize_visits(batch, tokenizer, "mortality", "medbind", max_length=64)
    assert tokenizer.decode(medbind["input_ids"][0]) == "[CLS] Male patient. [SEP]"
    assert medbind["labels"] == [1, 0]


def test_output_dir_defaults_to_the_task_and_mode_and_the_demo_preset_fills_in_its_paths():
    _, data_args, training_args = parse_arguments(["--preset", "demo", "--task", "mortality", "--mode", "text-only"])
    assert training_args.output_dir == "outputs/prompt-tuning-demo/mortality-text-only"
    assert data_args.dataset_dir == "outputs/demo-data" and training_args.use_cpu
    _, _, training_args = parse_arguments(["--task", "readmission", "--output_dir", "elsewhere"])
    assert training_args.output_dir == "elsewhere"


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (["--mode", "medbind"], ValueError, "--mode medbind needs --medbind_model"),
        (["--mode", "encoder-zoo", "--zoo_cxr_model", "a"], ValueError, "needs --zoo_cxr_model and --zoo_ecg_model"),
        (["--preset", "demo", "--medbind_model", "no/such/folder"], FileNotFoundError,
         r"run the demo pretraining first: .* --output_dir no/such/folder"),
        (["--mode", "text-only", "--load_best_model_at_end", "true", "--eval_strategy", "epoch", "--save_strategy",
          "epoch"], ValueError, "not supported"),
        (["--mode", "text-only", "--baseline", "clip"], ValueError, "--baseline takes NAME=PATH"),
        (["--mode", "text-only", "--baseline", "clip=no/such/folder"], FileNotFoundError, "is not a folder"),
    ],
)  # fmt: skip
def test_missing_inputs_are_explained_before_any_work(tmp_path, arguments, error, message):
    with pytest.raises(error, match=message):
        main(["--task", "mortality", "--output_dir", str(tmp_path), *arguments])


@pytest.mark.slow
def test_each_mode_writes_every_metric_with_its_chance_level(runs):
    for mode, results in runs.items():
        prefix = f"prompt_tuning/mortality/{mode}"
        assert results["split"] == "test"
        for metric in METRICS:
            assert 0 <= results[f"{prefix}/{metric}"] <= 100
            assert 0 < results[f"{prefix}/{metric}/chance"] <= 100
        assert results[f"{prefix}/balanced_accuracy/chance"] == 50.0


@pytest.mark.slow
def test_each_mode_records_where_its_embedding_tokens_come_from(runs, world):
    expected = {
        "medbind": {"cxr": str(world / "medbind-bd"), "ecg": str(world / "medbind-bd")},
        "encoder-zoo": {"cxr": str(world / "medbind-bd"), "ecg": str(world / "ecg-clip")},
        "text-only": {},
    }
    for mode, sources in expected.items():
        config = MedBindClinicalPredictionConfig.from_pretrained(world / f"out-{mode}")
        assert config.embedding_models == sources and config.modalities == list(sources)
        assert config.id2label == {0: "survived", 1: "died"} and config.base_model_name_or_path is None
        assert json.loads((world / f"out-{mode}" / "results.json").read_text()) == runs[mode]


@pytest.mark.slow
def test_the_zoo_takes_each_modality_from_its_own_model(runs, world):
    cache = world / "out-encoder-zoo" / "_embedding_cache"
    assert len(list(cache.glob("*.safetensors"))) == 2  # CXR of medbind-bd, ECG of ecg-clip
    medbind_cache = {path.name for path in (world / "out-medbind" / "_embedding_cache").glob("*.safetensors")}
    shared = [path for path in cache.glob("*.safetensors") if path.name in medbind_cache]
    assert len(shared) == 1  # the CXR embeddings, the same model's on the same studies
    zoo_ecg = next(path for path in cache.glob("*.safetensors") if path.name not in medbind_cache)
    medbind_files = (world / "out-medbind" / "_embedding_cache").glob("*.safetensors")
    medbind_ecg = next(path for path in medbind_files if path.name != shared[0].name)
    assert not torch.equal(load_file(zoo_ecg)["embeds"], load_file(medbind_ecg)["embeds"])


@pytest.mark.slow
def test_the_saved_model_loads_back_and_the_card_reports_the_test_metrics(runs, world):
    output = world / "out-medbind"
    model = AutoModel.from_pretrained(output, trust_remote_code=True)
    assert isinstance(model, MedBindForClinicalPrediction)
    assert (output / "text_adapter" / "adapter_model.safetensors").is_file()
    card = (output / "README.md").read_text()
    results = runs["medbind"]
    accuracy = results["prompt_tuning/mortality/medbind/accuracy"]
    chance = results["prompt_tuning/mortality/medbind/accuracy/chance"]
    assert f"| accuracy | {accuracy:.1f} | {chance:.1f} |" in card
    assert "in-hospital mortality" in card and f"embedding of `{world / 'medbind-bd'}`" in card
    assert "- clinical-prediction" in card and "pipeline_tag: text-classification" in card


def test_mimic_trained_cards_state_physionet_terms_and_link_a_hub_base_model():
    text_config = {"vocab_size": 30, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                   "intermediate_size": 32}  # fmt: skip
    config = MedBindClinicalPredictionConfig(text_config=text_config, base_model_name_or_path="dmis-lab/biobert-v1.1")
    model = MedBindForClinicalPrediction(config)
    results = {"accuracy": 74.8, "accuracy/chance": 70.1, "balanced_accuracy": 60.0, "balanced_accuracy/chance": 50.0}
    card = str(render_model_card(model, results, "readmission", "medbind", "org/model", False, {"epochs": 3}))
    assert "license: other" in card and "license_name: physionet-credentialed-health-data-license-1.5.0" in card
    assert "base_model: dmis-lab/biobert-v1.1" in card and "PhysioNet Credentialed Health Data License 1.5.0" in card
    assert "| accuracy | 74.8 | 70.1 |" in card and "| auroc |" not in card
    assert "30-day readmission" in card and "SYNTHETIC" not in card


@pytest.mark.slow
def test_push_to_hub_uploads_the_adapter_the_card_and_results_but_no_embeddings(world, runs, tmp_path):
    """A second medbind run, pushed to a fake Hub; it reads the first run's embedding cache instead of embedding."""
    hub = FakeHub()
    hf_home = tmp_path / "hf_home"

    def refuse(*args, **kwargs):
        raise AssertionError("embedded again instead of reading the cache")

    with serving(hub, hf_home) as patch:
        patch.setattr(medbind_training.embedding.Embedder, "_run", refuse)
        results = run(
            world, "medbind", "out-pushed", "--embedding_cache_dir", str(world / "out-medbind" / "_embedding_cache"),
            "--push_to_hub", "true", "--hub_model_id", REPO_ID, "--hub_token", TOKEN,
        )  # fmt: skip
    assert hub.unexpected == [] and len(hub.commits) == 1
    assert next(request.url for request in hub.requests if request.url != AGENT_REGISTRY).endswith("/api/repos/create")
    files = hub.files()
    assert {
        "config.json", "model.safetensors", "modeling_clinical_prediction.py", "configuration_clinical_prediction.py",
        "text_adapter/adapter_config.json", "text_adapter/adapter_model.safetensors", "README.md", "results.json",
        "tokenizer.json",
    } <= files.keys()  # fmt: skip
    # The embedding cache is derived from the (credentialed) studies: it stays local, as do checkpoints.
    assert not [path for path in files if path.startswith(("_", "checkpoint-")) or path.endswith(".pt")]
    assert not [path for path in files if TOKEN.encode() in hub.content(path)]
    output = world / "out-pushed"
    adapter = "text_adapter/adapter_model.safetensors"
    assert hub.content(adapter) == (output / adapter).read_bytes()
    assert json.loads(hub.content("results.json")) == results
    card = hub.content("README.md").decode()
    assert f'AutoModel.from_pretrained("{REPO_ID}", trust_remote_code=True)' in card


def test_prompt_tuning_rows_put_the_mode_first_then_each_baseline_by_name():
    results = {
        "prompt_tuning/mortality/medbind/accuracy": 74.8, "prompt_tuning/mortality/medbind/accuracy/chance": 70.1,
        "baselines/clip/prompt_tuning/mortality/accuracy": 71.0,
        "baselines/clip/prompt_tuning/mortality/accuracy/chance": 70.1,
        "baselines/clip/prompt_tuning/mortality/auroc": 55.0, "split": "test", "model": "out",
    }  # fmt: skip
    assert prompt_tuning_rows(results, "medbind") == {
        "medbind": {"accuracy": 74.8, "accuracy/chance": 70.1},
        "clip": {"accuracy": 71.0, "accuracy/chance": 70.1, "auroc": 55.0},
    }


@pytest.fixture(scope="module")
def baseline_run(world, tmp_path_factory) -> tuple[dict, list[tuple[dict, torch.Tensor, torch.Tensor]], Path]:
    """
    A text-only run with three baselines, a tiny random CLIP (CXR only), ECG-CLIP (ECG only) and the medbind mode's
    own model; `(results, what each model's forward received as modality tokens, the CLIP folder)`.
    """
    from tiny_medbind import save_tiny_clip

    clip = save_tiny_clip(tmp_path_factory.mktemp("baselines") / "clip")
    received = []
    build = MedBindForClinicalPrediction.build_inputs_embeds

    def record(self, input_ids, attention_mask, token_type_ids, modality_embeds, modality_mask):
        if modality_embeds is not None:
            received.append((dict(self.config.embedding_models), modality_embeds.detach().clone(), modality_mask))
        return build(self, input_ids, attention_mask, token_type_ids, modality_embeds, modality_mask)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MedBindForClinicalPrediction, "build_inputs_embeds", record)
        results = run(
            world, "text-only", "out-baselines", "--baseline", f"clip={clip}",
            "--baseline", f"ecg-clip={world / 'ecg-clip'}", "--baseline", f"same={world / 'medbind-bd'}",
        )  # fmt: skip
    return results, received, clip


@pytest.mark.slow
def test_each_baseline_is_a_row_of_its_own_under_its_prefix(baseline_run, world):
    results, _, clip = baseline_run
    output = world / "out-baselines"
    for name in ("clip", "ecg-clip"):
        prefix = f"baselines/{name}/prompt_tuning/mortality"
        for metric in METRICS:
            assert 0 <= results[f"{prefix}/{metric}"] <= 100
        # The same test visits: the same chance levels as the mode's row.
        assert results[f"{prefix}/accuracy/chance"] == results["prompt_tuning/mortality/text-only/accuracy/chance"]
    # Each baseline gives the tokens of the modalities it embeds, and its model is saved apart from the mode's.
    clip_config = MedBindClinicalPredictionConfig.from_pretrained(output / "_baselines" / "clip")
    assert clip_config.modalities == ["cxr"] and clip_config.embedding_models == {"cxr": str(clip)}
    assert clip_config.embedding_dim == 8  # the tiny CLIP's projection size, not MedBind's
    ecg_config = MedBindClinicalPredictionConfig.from_pretrained(output / "_baselines" / "ecg-clip")
    assert ecg_config.modalities == ["ecg"] and ecg_config.embedding_models == {"ecg": str(world / "ecg-clip")}
    assert MedBindClinicalPredictionConfig.from_pretrained(output).modalities == []
    assert json.loads((output / "results.json").read_text()) == results
    card = (output / "README.md").read_text()
    assert "Every model of this run (paper Table 4)" in card
    clip_accuracy = results["baselines/clip/prompt_tuning/mortality/accuracy"]
    assert f"| clip | {clip_accuracy:.1f} (chance" in card and "| text-only |" in card and "| ecg-clip |" in card


@pytest.mark.slow
def test_the_baselines_own_embeddings_are_what_reaches_the_model(baseline_run, world):
    _, received, clip = baseline_run
    cxr = datasets.concatenate_datasets(list(datasets.load_from_disk(world / "data" / "cxr").values()))
    # The CLIP's embeddings of the visits' radiographs, computed here apart from prompt tuning's code path.
    reference = load_baseline("clip", clip).embed_images(list(cxr["image"]))
    clip_batches = [(embeds, mask) for sources, embeds, mask in received if sources == {"cxr": str(clip)}]
    assert clip_batches and {tuple(embeds.shape[1:]) for embeds, _ in clip_batches} == {(1, 8)}
    present = torch.cat([embeds[:, 0][mask[:, 0].bool()] for embeds, mask in clip_batches])
    assert len(present) > 0
    # Unit vectors: another embedding lies ~1 away; batching alone moves float32 sums by ~1e-4.
    distances = torch.cdist(present, reference).min(dim=1).values
    assert distances.max() < 1e-3, "a CXR token that is not the CLIP's embedding of one of the visits' radiographs"
    assert any(sources == {"ecg": str(world / "ecg-clip")} for sources, _, _ in received)


@pytest.mark.slow
def test_a_medbind_folder_as_a_baseline_gives_the_row_of_mode_medbind(baseline_run, runs):
    results, _, _ = baseline_run
    same = {key.removeprefix("baselines/same/prompt_tuning/mortality/"): value
            for key, value in results.items() if key.startswith("baselines/same/")}  # fmt: skip
    medbind = {key.removeprefix("prompt_tuning/mortality/medbind/"): value
               for key, value in runs["medbind"].items() if key.startswith("prompt_tuning/")}  # fmt: skip
    assert same and same == medbind  # the same embeddings, tokens, seed and recipe: the same model
