"""The pretrained model's card (model_cards/medbind_model_cards/medbind_pretrained.py): model-index and tables from results.json, the use, data and
licence sections, and rendering it again from a new results.json."""

import pytest
import yaml
from huggingface_hub import ModelCard

from modeling_medbind import MedBindConfig
from medbind_model_cards.medbind_pretrained import read_results, render_model_card, rerender_model_card

# results.json as training/run_evaluation.py writes it (`medbind_training.results_keys`), with every kind of key.
RESULTS = {
    "model": "outputs/medbind-demo", "split": "test",
    "retrieval/cxr/cxr_to_text/recall@1": 12.5, "retrieval/cxr/cxr_to_text/recall@10": 61.25,
    "retrieval/cxr/cxr_to_text/chance@1": 1.5, "retrieval/pairs/cxr_to_ecg/recall@5": 22.0, "retrieval/rsum_cxr": 73.75,
    "zero_shot/ptbxl/balanced_accuracy": 41.0, "zero_shot/ptbxl/balanced_accuracy/chance": 20.0,
    "zero_shot/ptbxl/auroc": 70.5,
    "few_shot/ptbxl/k4/balanced_accuracy": 55.5, "few_shot/ptbxl/k4/ci95": 1.25, "few_shot/ptbxl/k4/chance": 20.0,
    "cross_modality/hypertrophy_from_cxr/balanced_accuracy": 64.0,
    "cross_modality/hypertrophy_from_cxr/balanced_accuracy/chance": 50.0,
    "zoo/zero_shot/ptbxl/balanced_accuracy": 33.0,
}  # fmt: skip
# What the model-index must hold: (dataset, metric, setting) -> value; no chance, interval, RSUM, zoo or string.
MODEL_INDEX = {
    ("cxr", "recall@1", "cxr_to_text"): 12.5, ("cxr", "recall@10", "cxr_to_text"): 61.25,
    ("pairs", "recall@5", "cxr_to_ecg"): 22.0, ("ptbxl", "balanced_accuracy", None): 41.0,
    ("ptbxl", "auroc", None): 70.5, ("ptbxl", "balanced_accuracy", "k4"): 55.5,
    ("pairs", "balanced_accuracy", "hypertrophy_from_cxr"): 64.0,
}  # fmt: skip


def card_of(results=RESULTS, synthetic=False, **overrides) -> ModelCard:
    config = MedBindConfig.from_preset("tiny", **overrides)
    return render_model_card(config, results, {"epochs": 3, "seed": 42}, "org/medbind-x", "Trained on X.", synthetic)


def test_model_index_holds_every_measured_number_of_results_json_and_nothing_else():
    parsed = ModelCard(str(card_of()))  # read back from the text, as the Hub reads it
    entries = {(result.dataset_type, result.metric_type, result.metric_config): result.metric_value
               for result in parsed.data.eval_results}  # fmt: skip
    assert entries == MODEL_INDEX
    assert {result.dataset_split for result in parsed.data.eval_results} == {"test"}
    assert parsed.data.model_name == "medbind-x"


def test_metadata_is_valid_yaml_with_the_hub_fields_and_the_model_index_layout():
    metadata = yaml.safe_load(str(card_of()).split("---")[1])
    assert metadata["library_name"] == "transformers" and metadata["pipeline_tag"] == "feature-extraction"
    assert {"medbind", "custom_code"} <= set(metadata["tags"])
    for group in metadata["model-index"][0]["results"]:
        assert {"type", "name"} <= group["task"].keys() and {"type", "name", "split"} <= group["dataset"].keys()
        assert all({"type", "value", "name"} <= metric.keys() for metric in group["metrics"])


def test_tables_show_each_number_with_its_chance_interval_and_the_rsum():
    text = str(card_of())
    assert "| CXR test split of the pretraining data | CXR -> text | 12.5 (chance 1.5) | - | 61.2 |" in text
    assert "| PTB-XL | 70.5 | 41.0 (chance 20.0) |" in text
    assert "| PTB-XL | 55.5 ± 1.2 (chance 20.0) |" in text
    assert "hypertrophy from CXR | 64.0 (chance 50.0) |" in text
    assert "CXR 73.8." in text and "33.0" not in text  # the encoder zoo's numbers are another model's


def test_read_results_attaches_chance_and_interval_to_their_number():
    (few_shot,) = [result for result in read_results(RESULTS) if result.family == "few_shot"]
    assert (few_shot.value, few_shot.chance, few_shot.ci95, few_shot.setting_name) == (55.5, 20.0, 1.25, "K=4")


def test_a_card_without_results_says_so_and_has_no_model_index():
    card = card_of(results={"model": "m", "split": "test"})
    assert "No evaluation results were recorded" in str(card) and "model-index" not in str(card)


def test_card_states_use_scope_data_terms_limitations_loading_and_citation():
    text = str(card_of())
    for section in ("## Intended use", "## Training data", "## Limitations", "## How to use", "## Citation"):
        assert section in text
    assert "not a medical device" in text and "arXiv:2403.12894" in text
    assert "PhysioNet Credentialed Health Data License" in text
    assert 'pipeline("zero-shot-ecg-classification", model="org/medbind-x", trust_remote_code=True)' in text
    assert 'pipeline("zero-shot-cxr-classification"' in text and "medbind zero-shot --model org/medbind-x" in text
    assert "ECGs of 10 s at 100 Hz" in text


def test_weights_from_mimic_carry_physionets_licence_and_synthetic_ones_a_warning():
    real, synthetic = card_of().data, card_of(synthetic=True)
    assert (real.license, real.license_name) == ("other", "physionet-credentialed-health-data-license-1.5.0")
    assert synthetic.data.license == "apache-2.0" and "synthetic" in synthetic.data.tags
    assert "**Trained on SYNTHETIC data.**" in str(synthetic) and "SYNTHETIC" not in str(card_of())


def test_an_ecg_clip_card_offers_no_cxr_usage():
    text = str(card_of(variant="ecg-clip"))
    assert "ECG-CLIP" in text and "zero-shot-cxr-classification" not in text and "images=" not in text


def test_a_card_is_rendered_again_from_new_results_keeping_its_training_section(tmp_path):
    config = MedBindConfig.from_preset("tiny", variant="nm")
    config.save_pretrained(tmp_path)
    card = render_model_card(config, RESULTS, {"epochs": 3}, "org/m", "Trained on X.", synthetic=True)
    card.save(tmp_path / "README.md")
    card = rerender_model_card(tmp_path, {"split": "validation", "zero_shot/ptbxl/balanced_accuracy": 47.0})
    assert [(r.metric_value, r.dataset_split) for r in card.data.eval_results] == [(47.0, "validation")]
    text = str(card)
    assert "Trained on X." in text and "| epochs | 3 |" in text and "MEDBind_NM" in text and "SYNTHETIC" in text


def test_a_card_not_written_by_medbind_is_not_rendered_again(tmp_path):
    MedBindConfig.from_preset("tiny").save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="README.md not found"):
        rerender_model_card(tmp_path, RESULTS)
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# someone else's card\n")
    with pytest.raises(ValueError, match="no `medbind:` metadata"):
        rerender_model_card(tmp_path, RESULTS)


def test_card_states_the_retrieval_protocol_of_its_results_and_leaves_baselines_out():
    default = str(card_of())  # results.json without protocol keys: the default protocol
    assert "every report identical to the query's own" in default and "every row of the evaluated split" in default
    instance = {
        **RESULTS, "protocol/retrieval_positives": "instance", "protocol/retrieval_gallery": "100",
        "protocol/retrieval_gallery_draws": "5", "protocol/retrieval_seed": "0",
        "baselines/clip/zero_shot/ptbxl/balanced_accuracy": 27.5,
    }  # fmt: skip
    text = str(card_of(instance))
    assert "only the query's own report counts as a hit" in text and "galleries of 100 rows, averaged over 5 draws" in text
    assert "--retrieval_positives instance --retrieval_gallery 100" in text
    assert "27.5" not in text  # a baseline's numbers are another model's
    assert "the project's choice: the paper gives none" in text  # the ECG tower's sizes are not the paper's
