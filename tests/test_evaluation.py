"""The evaluation (medbind_training.evaluation and the modules it runs, training/run_evaluation.py): prompts, tasks on
embeddings, cache, end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import wfdb
from samples import ecg_dataset
from tiny_medbind import save_tiny_clip
from transformers import AutoModel, AutoProcessor

from medbind_training.tokenizer import train_wordpiece_tokenizer

from modeling_medbind import (
    MedBindConfig,
    MedBindECGFeatureExtractor,
    MedBindImageProcessor,
    MedBindModel,
    MedBindProcessor,
)
from medbind_processing.labels import CHEXPERT_LABELS, ECG_SUPERCLASSES
from medbind_processing.cpsc2018 import CPSC2018_CLASSES
from medbind_processing.demo import save_demo
from medbind_training.embedding import Embedder
from medbind_training.evaluation import EvaluationArguments
from medbind_training.evaluation import main as evaluate_main
from medbind_training.evaluation_tasks import (
    CROSS_MODALITY_TASKS,
    few_shot_balanced_accuracy,
    mean_ci95,
    modality_text_retrieval,
    neighbour_agreement,
    prototype_scores,
    row_labels,
    single_class_rows,
    support_sets,
    tsne_map,
    zero_shot_results,
    zero_shot_scores,
)
from medbind_training.prompt_files import DEMO_PROMPTS, PromptSet, load_prompt_sets, prompt_sets
from medbind_training.results_keys import rsum
from medbind_training.retrieval import RetrievalProtocol

EVALUATE = Path(__file__).resolve().parents[1] / "training" / "run_evaluation.py"


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("evaluation") / "data"
    save_demo(root, num_patients=300, seed=0)
    return root


@pytest.fixture(scope="module")
def tiny_model(demo_data) -> Path:
    """A randomly initialised tiny MedBind saved with its processor (any model will do for well-formedness)."""
    reports = [
        text for name in ("cxr", "ecg") for text in datasets.load_from_disk(str(demo_data / name))["train"]["text"]
    ]
    tokenizer = train_wordpiece_tokenizer(reports, vocab_size=1024)
    config = MedBindConfig.from_preset("tiny")
    config.text_config.vocab_size = len(tokenizer)
    torch.manual_seed(0)
    path = demo_data.parent / "tiny-model"
    MedBindModel(config).save_pretrained(path)
    processor = MedBindProcessor(
        MedBindImageProcessor.from_timm(config.cxr_config.model_name), MedBindECGFeatureExtractor(), tokenizer
    )
    processor.save_pretrained(path)
    return path


# ---- prompts -------------------------------------------------------------------------------------------------


def test_packaged_prompts_cover_the_papers_zero_shot_sets_with_table_a1_wording():
    prompts = load_prompt_sets()
    assert {"ptbxl", "cpsc2018", "rsna", "covid", "ecg", "cxr"} <= set(prompts)
    assert list(prompts["ptbxl"].classes) == list(ECG_SUPERCLASSES)
    assert prompts["ptbxl"].classes["HYP"] == ("This ECG shows hypertrophy.",)
    assert prompts["ecg"] is prompts["ptbxl"]  # MIMIC-ECG and the demo use PTB-XL's superclasses
    # CPSC2018's abbreviations, as its builder names them, map to Table A.1's names
    assert list(prompts["cpsc2018"].classes) == list(CPSC2018_CLASSES)
    assert prompts["cpsc2018"].classes["I-AVB"] == ("This ECG shows first-degree atrioventricular block.",)
    assert prompts["rsna"].classes == {"Normal": ("No evidence of pneumonia.",),
                                       "Pneumonia": ("Findings suggesting pneumonia.",)}  # fmt: skip
    assert set(prompts["cxr"].classes) == {"No Finding", "Cardiomegaly", "Pneumonia"}


def test_covid_draws_ten_of_about_twenty_prompts_per_class_reproducibly():
    covid = load_prompt_sets()["covid"]
    assert all(len(prompts) >= 20 for prompts in covid.classes.values())
    drawn = covid.sample(seed=0)
    assert all(len(prompts) == 10 == len(set(prompts)) for prompts in drawn.values())
    assert drawn == covid.sample(seed=0) and drawn != covid.sample(seed=1)
    assert "Multifocal bilateral opacities." in covid.classes["COVID-19"]


def test_prompt_files_are_checked(tmp_path):
    (tmp_path / "mine.yaml").write_text(
        "datasets: [mine]\nclasses: {A: [first], B: second}\ntemplate: 'It is {label}.'\n"
    )
    assert load_prompt_sets(tmp_path)["mine"].classes == {"A": ("It is first.",), "B": ("It is second.",)}
    (tmp_path / "typo.yaml").write_text("datasets: [other]\nclases: {A: x}\n")
    with pytest.raises(ValueError, match="unknown keys"):
        load_prompt_sets(tmp_path)
    (tmp_path / "typo.yaml").write_text("datasets: [mine]\nclasses: {A: x}\n")
    with pytest.raises(ValueError, match="already given"):
        load_prompt_sets(tmp_path)


@pytest.mark.slow
def test_demo_prompts_speak_the_demo_reports_words_and_replace_only_their_datasets(demo_data):
    demo = load_prompt_sets(DEMO_PROMPTS)
    assert set(demo["ecg"].classes) == {"NORM", "HYP", "MI", "CD"} and set(demo["cxr"].classes) == {
        "No Finding", "Cardiomegaly", "Pneumonia"}  # fmt: skip
    for name, prompt_set in demo.items():
        reports = datasets.load_from_disk(str(demo_data / name))["train"]["text"]
        vocabulary = {word for text in reports for word in text.lower().replace(",", " ").split()}
        for prompts in prompt_set.classes.values():
            words = {word for prompt in prompts for word in prompt.lower().replace(",", " ").split()}
            assert {word for word in words if not word.rstrip(".").replace(".", "").isdigit()} <= vocabulary
    chosen = prompt_sets(DEMO_PROMPTS)
    assert chosen["ecg"] == demo["ecg"] and chosen["ptbxl"] == load_prompt_sets()["ptbxl"] != demo["ecg"]


# ---- tasks on embeddings --------------------------------------------------------------------------------------


def test_multi_label_rows_count_only_with_exactly_one_listed_class():
    labels = [["NORM"], ["HYP", "STTC"], ["HYP", "CD"], [], ["MI"], ["Pneumonia"]]
    assert [part.tolist() for part in single_class_rows(labels, ["NORM", "HYP", "MI"])] == [[0, 1, 2, 4], [0, 1, 1, 2]]
    # ["HYP", "CD"] has two listed classes: left out
    assert [part.tolist() for part in single_class_rows(labels, ["HYP", "CD"])] == [[1], [0]]


def test_row_labels_read_single_and_multi_label_columns():
    names = datasets.ClassLabel(names=["a", "b"])
    single = datasets.Dataset.from_dict({"label": [1, 0]}, features=datasets.Features({"label": names}))
    multi = datasets.Dataset.from_dict({"labels": [[0, 1], []]},
                                       features=datasets.Features({"labels": datasets.List(names)}))  # fmt: skip
    assert row_labels(single) == [["b"], ["a"]] and row_labels(multi) == [["a", "b"], []]


def test_zero_shot_scores_average_the_similarities_over_a_class_prompts():
    embeds = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=-1)
    prompts = [F.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), dim=-1), torch.tensor([[0.0, 1.0]])]
    scores = zero_shot_scores(embeds, prompts)
    expected = np.array([[(1 + 0.5**0.5) / 2, 0.0], [0.5**0.5 / 2, 1.0], [(0.5**0.5 + 1) / 2, 0.5**0.5]])
    assert scores == pytest.approx(expected, abs=1e-6)
    assert scores.argmax(axis=1).tolist() == [0, 1, 0]


def test_cross_modality_tasks_name_labels_the_datasets_use():
    labels = {"ecg": ECG_SUPERCLASSES, "cxr": CHEXPERT_LABELS}
    assert all(task.label in labels[task.support] for task in CROSS_MODALITY_TASKS.values())


def test_prototypes_come_from_the_support_modality_class_means():
    support = F.normalize(torch.tensor([[1.0, 0.1], [1.0, -0.1], [0.0, 1.0], [0.1, 1.0]]), dim=-1)
    queries = F.normalize(torch.tensor([[0.9, 0.2], [0.2, 0.9]]), dim=-1)
    scores = prototype_scores(queries, support, np.array([0, 0, 1, 1]))
    assert scores.shape == (2, 2) and scores.argmax(axis=1).tolist() == [0, 1]
    assert np.abs(scores).max() <= 1.0 + 1e-6  # cosines: the prototypes are normalised


def test_support_sets_are_seeded_per_class_and_nested_across_k():
    targets = np.array([0] * 20 + [1] * 5 + [2] * 8)
    sets = support_sets(targets, num_classes=3, shots=4, num_sets=6, seed=0)
    assert sets.shape == (6, 3, 4)
    assert all((targets[sets[s, c]] == c).all() and len(set(sets[s, c])) == 4 for s in range(6) for c in range(3))
    assert (sets == support_sets(targets, 3, 4, 6, seed=0)).all()
    assert (sets[0] != sets[1]).any()
    with pytest.raises(ValueError, match="5"):
        support_sets(targets, 3, shots=6, num_sets=1, seed=0)


def test_few_shot_probe_learns_separable_classes_and_is_chance_on_noise():
    rng = np.random.default_rng(0)
    centres = np.eye(3, 16) * 3

    def sample(targets):  # noqa: E306
        return F.normalize(
            torch.tensor(centres[targets] + rng.normal(size=(len(targets), 16)), dtype=torch.float32), dim=-1
        )

    pool_targets, test_targets = np.repeat(np.arange(3), 30), np.repeat(np.arange(3), 50)
    sets = support_sets(pool_targets, 3, 8, num_sets=10, seed=0)
    separable = few_shot_balanced_accuracy(sample(pool_targets), sets, sample(test_targets), test_targets, shots=(1, 8))
    assert separable[8].shape == (10,) and separable[8].mean() > 90.0 and separable[1].mean() > 50.0
    noise = F.normalize(torch.randn(150, 16), dim=-1)
    chance = few_shot_balanced_accuracy(noise[:90], sets, noise[90:], rng.integers(0, 3, 60), shots=(8,))
    assert abs(chance[8].mean() - 100 / 3) < 10.0
    # binary probes (one weight vector in scikit-learn) predict both classes
    binary = few_shot_balanced_accuracy(sample(pool_targets[:60]), support_sets(pool_targets[:60], 2, 4, 5, 0),
                                        sample(test_targets[:100]), test_targets[:100], shots=(4,))  # fmt: skip
    assert binary[4].mean() > 90.0


def test_ci95_is_the_normal_interval_of_the_mean():
    mean, half_width = mean_ci95(np.array([50.0, 60.0, 70.0, 80.0]))
    assert mean == 65.0 and half_width == pytest.approx(1.96 * np.std([50, 60, 70, 80], ddof=1) / 2)


def test_rsum_adds_r1_and_r10_of_modality_to_text_over_datasets():
    # paper Table 2, MEDBind_BD: MIMIC-CXR 44.7 / 91.0, CheXpert5x200 2.4 / 20.0, Open-I 13.6 / 39.7 -> 211.4
    results = {}
    for dataset, (r1, r10) in {"cxr": (44.7, 91.0), "chexpert5x200": (2.4, 20.0), "openi": (13.6, 39.7)}.items():
        prefix = f"retrieval/{dataset}/cxr_to_text"
        results |= {f"{prefix}/recall@1": r1, f"{prefix}/recall@5": 70.0, f"{prefix}/recall@10": r10,
                    f"{prefix}/chance@1": 1.0}  # fmt: skip
    results |= {"retrieval/ecg/ecg_to_text/recall@1": 53.6, "retrieval/ecg/ecg_to_text/recall@10": 94.5,
                "retrieval/pairs/cxr_to_ecg/recall@1": 9.0}  # fmt: skip
    assert rsum(results) == pytest.approx({"retrieval/rsum_cxr": 211.4, "retrieval/rsum_ecg": 148.1})


def test_neighbour_agreement_and_its_chance():
    points = np.array([[0.0, 0.0], [0.0, 0.1], [0.1, 0.0], [10.0, 10.0], [10.0, 10.1], [10.1, 10.0]])
    share, chance = neighbour_agreement(points, ["a", "a", "a", "b", "b", "b"], neighbours=2)
    assert share == 100.0 and chance == pytest.approx(100 * 2 * 3 * 2 / (6 * 5))


def test_tsne_map_takes_a_zoo_pair_whose_spaces_differ_in_size():
    generator = torch.Generator().manual_seed(0)
    embeds = {"cxr": torch.randn(12, 4, generator=generator), "ecg": torch.randn(10, 6, generator=generator) + 5}
    tsne = tsne_map(embeds, {"cxr": ["CXR a"] * 12, "ecg": ["ECG b"] * 10})
    assert tsne.points.shape == (22, 2) and tsne.modalities == ["cxr"] * 12 + ["ecg"] * 10
    assert tsne.agreement["modality"][0] == 100.0  # the ECGs sit apart, as their embeddings do


# ---- embedding, cache, real data, end to end -------------------------------------------------------------------


@pytest.mark.slow
def test_embeddings_are_cached_on_disk_and_read_back(tiny_model, demo_data, tmp_path):
    model, processor = MedBindModel.from_pretrained(tiny_model), AutoProcessor.from_pretrained(tiny_model)
    ecg = datasets.load_from_disk(str(demo_data / "ecg"))["test"].select(range(6))
    first = Embedder(model, processor, batch_size=4, cache_dir=tmp_path).embed(ecg, "ecg")
    assert first.shape == (6, model.config.projection_dim)
    assert torch.linalg.vector_norm(first, dim=-1) == pytest.approx(torch.ones(6), abs=1e-5)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("embedded again instead of reading the cache")

    model.get_ecg_features = refuse
    again = Embedder(model, processor, batch_size=4, cache_dir=tmp_path).embed(ecg, "ecg")
    assert torch.equal(first, again)
    # another model (other weights) does not read the first model's file
    other = MedBindModel.from_pretrained(tiny_model)
    with torch.no_grad():
        other.ecg_projection.weight.mul_(2)
    Embedder(other, processor, cache_dir=tmp_path).embed(ecg, "ecg")
    assert len(list(tmp_path.glob("*.safetensors"))) == 2


@pytest.mark.slow  # its tiny model's vocabulary comes from a 300-patient demo build
def test_zero_shot_on_a_real_ptb_record_is_well_formed(shared_data, tiny_model):
    record = shared_data / "ecg" / "s0010_re"
    note = " ".join(wfdb.rdheader(str(record)).comments).lower()
    assert "myocardial infarction" in note  # the ground truth of this record: acute infero-lateral MI
    model = AutoModel.from_pretrained(tiny_model, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(tiny_model, trust_remote_code=True)
    superclasses = datasets.List(datasets.ClassLabel(names=list(ECG_SUPERCLASSES)))
    features = datasets.Features({"ecg_path": datasets.Value("string"), "sampling_rate": datasets.Value("int64"),
                                  "labels": superclasses})  # fmt: skip
    ptb = datasets.Dataset.from_dict({"ecg_path": [str(record)], "sampling_rate": [1000], "labels": [["MI"]]},
                                     features=features)  # fmt: skip
    embedder = Embedder(model, processor)
    embeds = embedder.embed(ptb, "ecg")
    assert embeds.shape == (1, model.config.projection_dim) and torch.isfinite(embeds).all()
    prompt_set = load_prompt_sets()["ptbxl"]
    prompt_embeds = torch.split(embedder.embed_texts([p for c in prompt_set.classes.values() for p in c]), 1)
    scores = zero_shot_scores(embeds, prompt_embeds)
    assert scores.shape == (1, len(ECG_SUPERCLASSES)) and np.isfinite(scores).all() and np.abs(scores).max() <= 1 + 1e-5
    results = zero_shot_results(embedder, "ptb", ptb, embeds, prompt_set)
    # one record of one class: 100 if its highest-scoring class is MI, else 0; no AUROC (one class)
    assert set(results) == {"zero_shot/ptb/balanced_accuracy", "zero_shot/ptb/balanced_accuracy/chance"}
    predicted = list(prompt_set.classes)[int(scores.argmax())]
    assert results["zero_shot/ptb/balanced_accuracy"] == (100.0 if predicted == "MI" else 0.0)
    with pytest.raises(ValueError, match="MI "):
        zero_shot_results(embedder, "ptb", ptb, embeds, PromptSet({"NORM": ("a",), "MI ": ("b",)}))


def run_evaluate(*arguments: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    result = subprocess.run([sys.executable, str(EVALUATE), *arguments], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


@pytest.mark.slow
def test_evaluate_script_writes_every_task_key_and_figure_then_reuses_embeddings(tiny_model, demo_data, tmp_path):
    output = tmp_path / "out"
    common = ["--model_name_or_path", str(tiny_model), "--dataset_dir", str(demo_data), "--output_dir", str(output)]
    run_evaluate(*common, "--few_shot_sets", "4", "--few_shot_shots", "1", "2",
                 "--zoo_cxr_model", str(tiny_model), "--zoo_ecg_model", str(tiny_model))  # fmt: skip
    results = json.loads((output / "results.json").read_text())
    assert results["split"] == "test" and results["model"] == str(tiny_model)
    expected = {"retrieval/rsum_cxr", "retrieval/rsum_ecg"}
    for direction in ("cxr/cxr_to_text", "ecg/ecg_to_text", "pairs/cxr_to_ecg", "pairs/ecg_to_cxr"):
        expected |= {f"retrieval/{direction}/{name}@{k}" for name in ("recall", "chance") for k in (1, 5, 10)}
    for dataset in ("cxr", "ecg"):
        expected |= {f"zero_shot/{dataset}/{metric}{chance}" for metric in ("balanced_accuracy", "auroc")
                     for chance in ("", "/chance")}  # fmt: skip
        expected |= {f"few_shot/{dataset}/k{k}/{name}" for k in (1, 2)
                     for name in ("balanced_accuracy", "ci95", "chance")}  # fmt: skip
    for task in ("hypertrophy_from_cxr", "cardiomegaly_from_ecg"):
        expected |= {f"cross_modality/{task}/balanced_accuracy", f"cross_modality/{task}/balanced_accuracy/chance"}
        expected.add(f"zoo/cross_modality/{task}/balanced_accuracy")
    expected.add("zoo/retrieval/pairs/cxr_to_ecg/recall@1")
    assert expected <= set(results), sorted(expected - set(results))
    assert not any(key.startswith("few_shot/") and "/k4/" in key for key in results)  # only the K asked for
    # the retrieval protocol the numbers were measured under, by default today's
    assert (results["protocol/retrieval_positives"], results["protocol/retrieval_gallery"]) == ("identical_text", "all")
    numbers = {key: value for key, value in results.items() if key not in ("model", "split") and "protocol/" not in key}
    assert all(isinstance(value, float) and 0.0 <= value <= 100.0
               for key, value in numbers.items() if "rsum" not in key)  # fmt: skip
    for figure in ("retrieval.png", "few_shot.png", "tsne.png"):
        assert (output / figure).stat().st_size > 10_000

    cache = output / "embedding_cache"
    files = {path.name: path.stat().st_mtime_ns for path in cache.glob("*.safetensors")}
    assert files
    second = tmp_path / "second"  # in this process, as a library call
    evaluate_main([*common[:-1], str(second), "--embedding_cache_dir", str(cache), "--tasks", "zero_shot"])
    assert {path.name: path.stat().st_mtime_ns for path in cache.glob("*.safetensors")} == files  # nothing re-embedded
    again = json.loads((second / "results.json").read_text())
    assert again["zero_shot/ecg/balanced_accuracy"] == results["zero_shot/ecg/balanced_accuracy"]
    assert not any(key.startswith(("retrieval/", "few_shot/")) for key in again)


def test_report_retrieval_follows_the_protocol_it_is_given(model_dir):
    model, processor = MedBindModel.from_pretrained(model_dir), AutoProcessor.from_pretrained(model_dir)
    ecg = ecg_dataset(12)
    embedder = Embedder(model, processor, batch_size=12)
    embeds = embedder.embed(ecg, "ecg")
    default = modality_text_retrieval(embedder, "ecg", ecg, "ecg", embeds)
    galleries = modality_text_retrieval(embedder, "ecg", ecg, "ecg", embeds, RetrievalProtocol("instance", 4, draws=3))
    assert default.keys() == galleries.keys()
    # one relevant report among 4 candidates: a random top 1 hits 1 time in 4, a top 5 or 10 always
    assert [galleries[f"retrieval/ecg/ecg_to_text/chance@{k}"] for k in (1, 5, 10)] == pytest.approx([25, 100, 100])
    assert galleries["retrieval/ecg/ecg_to_text/recall@10"] == 100.0


def test_retrieval_protocol_arguments_default_to_identical_reports_over_the_whole_split(tmp_path):
    paths = {"model_name_or_path": "m", "output_dir": str(tmp_path), "dataset_dir": str(tmp_path)}
    assert EvaluationArguments(**paths).retrieval_protocol == RetrievalProtocol("identical_text", None)
    chosen = EvaluationArguments(**paths, retrieval_positives="instance", retrieval_gallery="100",
                                 retrieval_gallery_draws=3, seed=4)  # fmt: skip
    assert chosen.retrieval_protocol == RetrievalProtocol("instance", 100, draws=3, seed=4)
    with pytest.raises(ValueError, match="number of candidates"):
        EvaluationArguments(**paths, retrieval_gallery="half")


@pytest.mark.slow
def test_baselines_and_the_zoo_run_every_task_of_their_modalities_under_their_prefix(tiny_model, demo_data, tmp_path):
    clip = save_tiny_clip(tmp_path / "clip")
    output = tmp_path / "out"
    results = evaluate_main([
        "--model_name_or_path", str(tiny_model), "--dataset_dir", str(demo_data), "--output_dir", str(output),
        "--few_shot_sets", "4", "--few_shot_shots", "1", "2", "--tasks", "retrieval", "zero_shot", "few_shot",
        "cross_modality", "--baseline", f"same={tiny_model}", "--baseline", f"clip={clip}",
        "--zoo_cxr_model", str(tiny_model), "--zoo_ecg_model", str(tiny_model),
    ])  # fmt: skip
    main = {key: value for key, value in results.items() if key.split("/")[0] not in ("model", "split", "protocol")}
    main = {key: value for key, value in main.items() if not key.startswith(("baselines/", "zoo/"))}
    assert any(key.startswith("cross_modality/") for key in main) and any(key.startswith("few_shot/") for key in main)
    # The evaluated model as a baseline, and as both halves of the zoo, is the evaluated model: every key, same value.
    for prefix in ("baselines/same/", "zoo/"):
        assert {key.removeprefix(prefix): value for key, value in results.items() if key.startswith(prefix)} == main
    # A CXR-text model: the CXR tasks only (chance keys included), with the same chance as the evaluated model.
    clip_keys = {key.removeprefix("baselines/clip/") for key in results if key.startswith("baselines/clip/")}
    expected = {key for key in main if key.split("/")[1] == "cxr"} | {"retrieval/rsum_cxr"}
    assert clip_keys == expected, sorted(clip_keys ^ expected)
    assert results["baselines/clip/zero_shot/cxr/balanced_accuracy/chance"] == main["zero_shot/cxr/balanced_accuracy/chance"]
    assert results["baselines/clip/few_shot/cxr/k2/chance"] == main["few_shot/cxr/k2/chance"]
    with pytest.raises(ValueError, match="no ECG tower"):
        evaluate_main(["--model_name_or_path", str(tiny_model), "--dataset_dir", str(demo_data), "--output_dir",
                       str(tmp_path / "bad"), "--tasks", "retrieval", "--zoo_cxr_model", str(tiny_model),
                       "--zoo_ecg_model", str(clip)])  # fmt: skip


@pytest.mark.slow
def test_every_model_with_cxr_and_ecg_towers_gets_a_tsne_map_in_one_figure(
    tiny_model, demo_data, tmp_path, monkeypatch
):
    from tiny_medbind import save_tiny_clip

    import medbind_training.evaluation

    drawn = {}
    plot = medbind_training.evaluation.plot_tsne

    def record(maps, path, title):
        drawn.update(maps)
        return plot(maps, path, title)

    monkeypatch.setattr(medbind_training.evaluation, "plot_tsne", record)
    clip = save_tiny_clip(tmp_path / "clip")
    output = tmp_path / "out"
    results = evaluate_main([
        "--model_name_or_path", str(tiny_model), "--dataset_dir", str(demo_data), "--output_dir", str(output),
        "--tasks", "tsne", "--tsne_max_points", "40", "--baseline", f"same={tiny_model}", "--baseline", f"clip={clip}",
        "--zoo_cxr_model", str(tiny_model), "--zoo_ecg_model", str(tiny_model),
    ])  # fmt: skip
    # The CLIP has no ECG tower: no map. The zoo pair has both towers, one model each.
    assert list(drawn) == ["MedBind", "same", "encoder zoo"]
    # The evaluated model again, as a baseline and as both halves of the zoo: the same map, seed and points.
    for other in ("same", "encoder zoo"):
        np.testing.assert_allclose(drawn[other].points, drawn["MedBind"].points, atol=1e-4)
        assert drawn[other].classes == drawn["MedBind"].classes
    assert (output / "tsne.png").is_file()
    assert not [key for key in results if "tsne" in key]  # a map, not a number: no key for any model
