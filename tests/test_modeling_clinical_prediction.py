"""MedBindForClinicalPrediction: a LoRA-adapted BERT reading a visit's text, then its CXR / ECG embedding tokens."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoModel, AutoModelForSequenceClassification, BertConfig, BertModel

from modeling_medbind import MedBindClinicalPredictionConfig, MedBindForClinicalPrediction
from modeling_medbind.modeling_clinical_prediction import MODALITY_TOKEN_TYPE, append_modality_tokens

TINY_BERT = {"vocab_size": 60, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64, "max_position_embeddings": 32}  # fmt: skip
EMBEDDING_DIM = 256
CLS, SEP, PAD = 2, 3, 0


def tiny_model(seed: int = 0, **config) -> MedBindForClinicalPrediction:
    torch.manual_seed(seed)
    return MedBindForClinicalPrediction(MedBindClinicalPredictionConfig(text_config=TINY_BERT, **config))


def tiny_bert_folder(path) -> str:
    torch.manual_seed(1)
    BertModel(BertConfig(**TINY_BERT), add_pooling_layer=False).save_pretrained(path)
    return str(path)


def mixed_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Four visits: text only, text + CXR, text + ECG, text + both; texts of 5, 3, 4 and 3 tokens, right-padded."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.tensor([[CLS, 7, 8, 9, SEP], [CLS, 10, SEP, PAD, PAD], [CLS, 11, 12, SEP, PAD],
                              [CLS, 13, SEP, PAD, PAD]])  # fmt: skip
    return {
        "input_ids": input_ids,
        "attention_mask": (input_ids != PAD).long(),
        "modality_embeds": F.normalize(torch.randn(4, 2, EMBEDDING_DIM, generator=generator), dim=-1),
        "modality_mask": torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1]]),
        "labels": torch.tensor([0, 1, 0, 1]),
    }


def perturb_lora(model: MedBindForClinicalPrediction) -> None:
    """LoRA's B starts at zero; a non-zero B makes a lost adapter visible in the logits."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".lora_B." in name:
                parameter.normal_(std=0.5)


def test_only_lora_the_projections_and_the_head_are_trainable_and_receive_gradients():
    model = tiny_model()
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trainable and all(
        ".lora_A." in name or ".lora_B." in name or name.startswith(("modality_projections.", "classifier."))
        for name in trainable
    ), sorted(trainable)
    assert {"modality_projections.cxr.weight", "modality_projections.ecg.weight", "classifier.weight"} <= trainable
    assert sum(".lora_" in name for name in trainable) == 2 * 2 * 2  # A and B, query and value, 2 layers
    model(**mixed_batch()).loss.backward()
    with_gradients = {name for name, parameter in model.named_parameters() if parameter.grad is not None}
    assert with_gradients == trainable


@pytest.mark.parametrize("modalities", [[], ["cxr", "ecg"]])
def test_gradient_checkpointing_keeps_lora_gradients_with_frozen_embeddings(modalities):
    # With the word embeddings frozen, a reentrant checkpoint would see inputs without grad and drop LoRA's gradients.
    model, batch = tiny_model(modalities=modalities), mixed_batch()
    model.gradient_checkpointing_enable()
    if not modalities:
        batch = {key: batch[key] for key in ("input_ids", "attention_mask", "labels")}
    model.train()
    model(**batch).loss.backward()
    assert [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None] == []


def test_modality_tokens_follow_each_visits_own_text_and_padding_comes_last():
    hidden = 4
    text = torch.arange(1.0, 4 * 5 + 1).reshape(4, 5, 1).expand(4, 5, hidden)
    attention_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    tokens = -torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])[..., None].expand(4, 2, hidden)
    modality_mask = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1]])
    embeds, mask, token_types = append_modality_tokens(
        text, attention_mask, torch.zeros(4, 5, dtype=torch.long), tokens, modality_mask
    )
    assert embeds.shape == (4, 5, hidden)  # max(5 + 0, 3 + 1, 4 + 1, 3 + 2)
    assert mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]
    m = MODALITY_TOKEN_TYPE
    assert token_types.tolist() == [[0, 0, 0, 0, 0], [0, 0, 0, m, 0], [0, 0, 0, 0, m], [0, 0, 0, m, m]]
    assert embeds[1, 3, 0] == -3  # row 1: its CXR right after its 3 text tokens
    assert embeds[2, 4, 0] == -6  # row 2: its ECG after 4 text tokens
    assert embeds[3, 3:, 0].tolist() == [-7, -8]  # row 3: CXR then ECG
    assert embeds[0, :, 0].tolist() == text[0, :, 0].tolist()


def test_packing_grows_the_sequence_when_a_full_length_text_has_modalities():
    text = torch.ones(2, 3, 2)
    embeds, mask, _ = append_modality_tokens(
        text, torch.ones(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 2, 2),
        torch.tensor([[1, 1], [0, 0]]),
    )  # fmt: skip
    assert embeds.shape == (2, 5, 2) and mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]


def test_a_batch_mixing_text_only_cxr_ecg_and_both_visits_runs_forward_and_backward():
    model = tiny_model()
    output = model(**mixed_batch())
    assert output.logits.shape == (4, 2) and torch.isfinite(output.loss)
    output.loss.backward()
    # The CXR projection is reached only through visits 1 and 3, the ECG projection through visits 2 and 3.
    assert model.modality_projections["cxr"].weight.grad.abs().sum() > 0
    assert model.modality_projections["ecg"].weight.grad.abs().sum() > 0


def test_a_visit_is_classified_the_same_alone_as_in_a_mixed_padded_batch():
    model = tiny_model().eval()
    perturb_lora(model)
    batch = mixed_batch()
    with torch.no_grad():
        together = model(**{key: value for key, value in batch.items() if key != "labels"}).logits
        for row in range(4):
            length = int(batch["attention_mask"][row].sum())
            alone = model(
                input_ids=batch["input_ids"][row : row + 1, :length],
                modality_embeds=batch["modality_embeds"][row : row + 1],
                modality_mask=batch["modality_mask"][row : row + 1],
            ).logits
            torch.testing.assert_close(alone, together[row : row + 1], rtol=1e-5, atol=1e-5)


def test_an_absent_modality_is_not_read():
    model, batch = tiny_model().eval(), mixed_batch()
    changed = batch["modality_embeds"].clone()
    changed[0] = 1.0  # visit 0 has neither modality
    changed[1, 1] = 1.0  # visit 1 has no ECG
    with torch.no_grad():
        before = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       modality_embeds=batch["modality_embeds"], modality_mask=batch["modality_mask"]).logits
        after = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      modality_embeds=changed, modality_mask=batch["modality_mask"]).logits  # fmt: skip
    torch.testing.assert_close(after[:2], before[:2])


def test_lora_starts_as_the_identity_on_the_base_bert(tmp_path):
    model = MedBindForClinicalPrediction.from_backbone(tiny_bert_folder(tmp_path / "bert")).eval()
    bert = BertModel.from_pretrained(tmp_path / "bert", add_pooling_layer=False).eval()
    input_ids = mixed_batch()["input_ids"]
    with torch.no_grad():
        expected = bert(input_ids=input_ids).last_hidden_state
        torch.testing.assert_close(model.text_model(input_ids=input_ids).last_hidden_state, expected)


def test_medbind_mode_learns_a_label_only_the_ecg_embedding_carries_and_text_only_cannot():
    """
    The texts are noise; the label is the class of the ECG embedding (two clusters). If the embedding tokens reached
    the classifier with nothing in them (dropped, masked out, overwritten), the medbind model would stay at chance.
    """
    generator = torch.Generator().manual_seed(0)
    prototypes = F.normalize(torch.randn(2, EMBEDDING_DIM, generator=generator), dim=-1)

    def visits(count: int) -> dict[str, torch.Tensor]:
        labels = torch.randint(0, 2, (count,), generator=generator)
        input_ids = torch.randint(5, TINY_BERT["vocab_size"], (count, 8), generator=generator)
        input_ids[:, 0], input_ids[:, -1] = CLS, SEP
        embeds = F.normalize(torch.randn(count, 2, EMBEDDING_DIM, generator=generator), dim=-1)
        noise = 0.1 * torch.randn(count, EMBEDDING_DIM, generator=generator)
        embeds[:, 1] = F.normalize(prototypes[labels] + noise, dim=-1)
        modality_mask = torch.stack([torch.randint(0, 2, (count,), generator=generator), torch.ones(count)], 1)
        return {"input_ids": input_ids, "modality_embeds": embeds, "modality_mask": modality_mask, "labels": labels}

    train, test = visits(256), visits(256)

    def test_accuracy(modalities: list[str]) -> float:
        model = tiny_model(modalities=modalities, lora_dropout=0.0)
        keys = ["input_ids", "labels"] + (["modality_embeds", "modality_mask"] if modalities else [])
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        model.train()
        for _ in range(3):
            for start in range(0, 256, 32):
                loss = model(**{key: train[key][start : start + 32] for key in keys}).loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(**{key: test[key] for key in keys if key != "labels"}).logits
        return (logits.argmax(-1) == test["labels"]).float().mean().item()

    assert test_accuracy(["cxr", "ecg"]) > 0.9
    assert test_accuracy([]) < 0.65


def test_save_writes_the_peft_adapter_and_leaves_the_named_base_bert_out(tmp_path):
    model = MedBindForClinicalPrediction.from_backbone(
        tiny_bert_folder(tmp_path / "bert"), embedding_models={"cxr": "medbind-a", "ecg": "medbind-b"}
    )
    model.save_pretrained(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["base_model_name_or_path"] == str(tmp_path / "bert")
    assert config["embedding_models"] == {"cxr": "medbind-a", "ecg": "medbind-b"}
    with safe_open(tmp_path / "model" / "model.safetensors", "pt") as weights:
        assert {key.split(".")[0] for key in weights.keys()} == {"modality_projections", "classifier"}
    adapter = json.loads((tmp_path / "model" / "text_adapter" / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA" and adapter["base_model_name_or_path"] == str(tmp_path / "bert")
    assert (adapter["r"], adapter["lora_alpha"], sorted(adapter["target_modules"])) == (8, 16.0, ["query", "value"])
    with safe_open(tmp_path / "model" / "text_adapter" / "adapter_model.safetensors", "pt") as weights:
        keys = list(weights.keys())
    assert keys and all(key.startswith("base_model.model.encoder.layer.") and ".lora_" in key for key in keys)


def test_save_then_load_gives_identical_logits_and_keeps_the_base_frozen(tmp_path):
    model = MedBindForClinicalPrediction.from_backbone(tiny_bert_folder(tmp_path / "bert")).eval()
    perturb_lora(model)
    batch = {key: value for key, value in mixed_batch().items() if key != "labels"}
    with torch.no_grad():
        expected = model(**batch).logits
    model.save_pretrained(tmp_path / "model")
    for auto_class in (AutoModel, AutoModelForSequenceClassification):
        loaded = auto_class.from_pretrained(tmp_path / "model").eval()
        assert type(loaded) is MedBindForClinicalPrediction
        with torch.no_grad():
            torch.testing.assert_close(loaded(**batch).logits, expected, rtol=0, atol=0)
        trainable = {name for name, parameter in loaded.named_parameters() if parameter.requires_grad}
        assert trainable == {name for name, parameter in model.named_parameters() if parameter.requires_grad}


def test_a_random_bert_is_saved_with_the_model_and_restored(tmp_path):
    model = tiny_model(modalities=["ecg"]).eval()
    perturb_lora(model)
    batch = mixed_batch()
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask")}
    inputs |= {key: batch[key][:, 1:] for key in ("modality_embeds", "modality_mask")}  # the ECG column only
    with torch.no_grad():
        expected = model(**inputs).logits
    model.save_pretrained(tmp_path / "model")
    with safe_open(tmp_path / "model" / "model.safetensors", "pt") as weights:
        keys = list(weights.keys())
    assert any(key.startswith("text_model.") for key in keys) and not any(".lora_" in key for key in keys)
    loaded = MedBindForClinicalPrediction.from_pretrained(tmp_path / "model").eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, expected, rtol=0, atol=0)


def test_the_adapter_loads_onto_its_base_bert_with_peft_alone(tmp_path):
    model = MedBindForClinicalPrediction.from_backbone(tiny_bert_folder(tmp_path / "bert")).eval()
    perturb_lora(model)
    model.save_pretrained(tmp_path / "model")
    base = BertModel.from_pretrained(tmp_path / "bert", add_pooling_layer=False)
    peft_model = PeftModel.from_pretrained(base, tmp_path / "model", subfolder="text_adapter").eval()
    input_ids = mixed_batch()["input_ids"]
    with torch.no_grad():
        expected = model.text_model(input_ids=input_ids).last_hidden_state
        torch.testing.assert_close(peft_model(input_ids=input_ids).last_hidden_state, expected)


@pytest.mark.slow
def test_the_folder_loads_with_remote_code_where_medbind_is_not_installed(tmp_path, run_without_medbind):
    model = MedBindForClinicalPrediction.from_backbone(tiny_bert_folder(tmp_path / "bert")).eval()
    perturb_lora(model)
    model.save_pretrained(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_clinical_prediction.MedBindClinicalPredictionConfig",
        "AutoModel": "modeling_clinical_prediction.MedBindForClinicalPrediction",
        "AutoModelForSequenceClassification": "modeling_clinical_prediction.MedBindForClinicalPrediction",
    }
    batch = {key: value for key, value in mixed_batch().items() if key != "labels"}
    torch.save(batch, tmp_path / "inputs.pt")
    with torch.no_grad():
        expected = model(**batch).logits
    run_without_medbind(
        f"""
import torch
from transformers import AutoModel, AutoModelForSequenceClassification
torch.set_num_threads({torch.get_num_threads()})  # the same kernels as this process, for bit-identical results
inputs = torch.load({str(tmp_path / "inputs.pt")!r})
for auto_class in (AutoModel, AutoModelForSequenceClassification):
    model = auto_class.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    with torch.no_grad():
        torch.save(model(**inputs).logits, {str(tmp_path / "remote.pt")!r})
"""
    )
    torch.testing.assert_close(torch.load(tmp_path / "remote.pt"), expected, rtol=0, atol=0)


def test_an_unreachable_base_bert_names_the_identifier_and_hf_hub_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match=r"medbind-test/no-such-bert.*HF_HUB_OFFLINE is set"):
        MedBindForClinicalPrediction.from_backbone("medbind-test/no-such-bert")
    model = tiny_model(base_model_name_or_path="medbind-test/no-such-bert")
    model.save_pretrained(tmp_path / "model")
    adapter = json.loads((tmp_path / "model" / "text_adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "medbind-test/no-such-bert"
    with pytest.raises(FileNotFoundError, match=r"base BERT 'medbind-test/no-such-bert'.*HF_HUB_OFFLINE is set"):
        MedBindForClinicalPrediction.from_pretrained(tmp_path / "model")


def test_bad_inputs_are_explained():
    model, batch = tiny_model(), mixed_batch()
    with pytest.raises(ValueError, match=r"modality_embeds must be \[batch, 2 modalities \(cxr, ecg\), 256\]"):
        model(input_ids=batch["input_ids"], modality_embeds=batch["modality_embeds"][:, :1])
    left_padded = torch.tensor([[PAD, CLS, 7, SEP]])
    with pytest.raises(ValueError, match="right-padded"):
        model(input_ids=left_padded, attention_mask=(left_padded != PAD).long())
    too_long = torch.full((1, TINY_BERT["max_position_embeddings"]), 7)
    with pytest.raises(ValueError, match=r"34 input tokens exceed the BERT's 32 positions: .*max_length=30"):
        model(input_ids=too_long, modality_embeds=torch.zeros(1, 2, EMBEDDING_DIM))


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"modalities": ["cxr", "eeg"]}, "modalities must be distinct names"),
        ({"modalities": ["ecg", "ecg"]}, "modalities must be distinct names"),
        ({"modalities": ["ecg"], "embedding_models": {"cxr": "a"}}, "embedding_models names"),
    ],
)
def test_config_rejects_modalities_it_cannot_build(fields, message):
    with pytest.raises(ValueError, match=message):
        MedBindClinicalPredictionConfig(text_config=TINY_BERT, **fields)
