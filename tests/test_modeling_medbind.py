"""MedBindModel: towers, embeddings, forward and loss, checkpointing, Hub remote code, pretrained backbones."""

import os
import subprocess
import sys

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file
from tiny_medbind import TINY_IMAGE_SIZE, tiny_model
from transformers import AutoModel, BertConfig, BertModel

from medbind_training.losses import embeddings_loss
from medbind_training.tokenizer import train_wordpiece_tokenizer
from peft import LoraConfig, get_peft_model
from transformers.modeling_outputs import BaseModelOutputWithPooling

from modeling_medbind import MedBindConfig, MedBindModel, MedBindProcessor

BATCH = 3
# The tiny preset's CXR tower is a narrow ResNet; the paper's is a Swin, whose window attention and non-persistent
# buffers need their own checks, so some tests build a two-stage Swin of the same scale.
TINY_SWIN = {
    "model_name": "swin_tiny_patch4_window7_224",
    "drop_path_rate": 0.0,
    "model_kwargs": {"embed_dim": 16, "depths": [2, 2], "num_heads": [1, 2]},
}


def batch(seed: int = 0, rows: int = BATCH) -> dict:
    """A training batch: `rows` CXRs and `rows` ECGs, and their reports (the CXRs', then the ECGs')."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "pixel_values": torch.randn(rows, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE, generator=generator),
        "ecg_values": torch.randn(rows, 12, 1000, generator=generator),
        "input_ids": torch.randint(5, 500, (2 * rows, 10), generator=generator),
        "attention_mask": torch.ones(2 * rows, 10, dtype=torch.long),
    }


def test_tiny_preset_has_a_few_hundred_thousand_parameters():
    assert 1e5 < tiny_model().num_parameters() < 1e6


def test_features_are_unit_norm_projections():
    model, inputs = tiny_model(), batch()
    with torch.no_grad():
        features = [
            model.get_cxr_features(inputs["pixel_values"]),
            model.get_ecg_features(inputs["ecg_values"]),
            model.get_text_features(inputs["input_ids"][:BATCH], inputs["attention_mask"][:BATCH]),
        ]
    for output in features:
        # transformers 5's convention (CLIP's get_*_features): the tower's output, the embedding as pooler_output.
        assert isinstance(output, BaseModelOutputWithPooling) and output.last_hidden_state.shape[0] == BATCH
        assert output.pooler_output.shape == (BATCH, 256)
        torch.testing.assert_close(output.pooler_output.norm(dim=-1), torch.ones(BATCH))


def test_get_image_features_is_the_cxr_alias_and_return_dict_false_gives_tuples():
    model, inputs = tiny_model(), batch()
    with torch.no_grad():
        image = model.get_image_features(inputs["pixel_values"]).pooler_output
        torch.testing.assert_close(image, model.get_cxr_features(inputs["pixel_values"]).pooler_output)
        as_tuple = model.get_ecg_features(inputs["ecg_values"], return_dict=False)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[1], model.get_ecg_features(inputs["ecg_values"]).pooler_output)


def test_text_embedding_ignores_padding():
    model, ids, padded = tiny_model(), torch.tensor([[2, 17, 33, 3]]), torch.tensor([[2, 17, 33, 3, 0, 0]])
    with torch.no_grad():
        plain = model.get_text_features(ids, torch.ones_like(ids)).pooler_output
        with_padding = model.get_text_features(padded, torch.tensor([[1, 1, 1, 1, 0, 0]])).pooler_output
    torch.testing.assert_close(plain, with_padding, rtol=1e-4, atol=1e-5)


def test_forward_returns_clip_style_logits_scaled_by_the_temperature():
    model, inputs = tiny_model(), batch()
    texts = {"input_ids": inputs["input_ids"][:2], "attention_mask": inputs["attention_mask"][:2]}
    with torch.no_grad():
        out = model(pixel_values=inputs["pixel_values"], ecg_values=inputs["ecg_values"][:1], **texts)
        cxr = model.get_cxr_features(inputs["pixel_values"]).pooler_output
        ecg = model.get_ecg_features(inputs["ecg_values"][:1]).pooler_output
        text = model.get_text_features(**texts).pooler_output
    assert out.loss is None
    assert out.logits_per_cxr.shape == (BATCH, 2) and out.logits_per_ecg.shape == (1, 2)
    assert out.logits_per_text.shape == (2, BATCH)  # CLIP's: the texts against the images (the CXRs)
    torch.testing.assert_close(out.logits_per_cxr, cxr @ text.T / 0.07)
    torch.testing.assert_close(out.logits_per_ecg, ecg @ text.T / 0.07)
    torch.testing.assert_close(out.logits_per_text, text @ cxr.T / 0.07)
    assert out.logits_per_image is out.logits_per_cxr  # CLIP's name, read by the zero-shot image pipeline


def test_model_takes_the_processor_output_of_one_cxr_one_ecg_and_two_texts():
    model = tiny_model()
    texts = ["Sinus rhythm. Inferior myocardial infarction.", "Mild cardiomegaly, lungs clear."]
    processor = MedBindProcessor.from_config(model.config, train_wordpiece_tokenizer(texts * 4, vocab_size=120))
    radiograph = np.random.default_rng(0).integers(0, 256, (300, 260), dtype=np.uint8)
    inputs = processor(images=radiograph, ecgs=np.random.default_rng(1).normal(size=(12, 5000)), sampling_rate=500,
                       text=texts, return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        out = model(**inputs)
        cxr = model.get_cxr_features(inputs["pixel_values"]).pooler_output
        ecg = model.get_ecg_features(inputs["ecg_values"]).pooler_output
        text = model.get_text_features(inputs["input_ids"], inputs["attention_mask"]).pooler_output
    assert (out.logits_per_cxr.shape, out.logits_per_ecg.shape, out.logits_per_text.shape) == ((1, 2), (1, 2), (2, 1))
    torch.testing.assert_close((out.cxr_embeds, out.ecg_embeds, out.text_embeds), (cxr, ecg, text))
    torch.testing.assert_close(out.logits_per_ecg, model.similarity_logits(ecg, text))


def test_forward_without_text_has_embeddings_and_no_logits():
    model, inputs = tiny_model(), batch()
    with torch.no_grad():
        out = model(ecg_values=inputs["ecg_values"])
    assert out.ecg_embeds.shape == (BATCH, 256)
    assert out.logits_per_ecg is None and out.logits_per_text is None and out.text_embeds is None


def clip_loss(logits: torch.Tensor) -> torch.Tensor:
    targets = torch.arange(logits.shape[0])
    return (torch.nn.functional.cross_entropy(logits, targets) + torch.nn.functional.cross_entropy(logits.T, targets)) / 2


def test_return_loss_is_clips_loss_per_modality_against_its_reports():
    model, inputs = tiny_model(), batch()
    with torch.no_grad():
        out = model(**inputs, return_loss=True)  # the training layout: the CXRs' reports, then the ECGs'
        text = out.text_embeds
        expected = clip_loss(out.cxr_embeds @ text[:BATCH].T / 0.07) + clip_loss(out.ecg_embeds @ text[BATCH:].T / 0.07)
        torch.testing.assert_close(out.loss, expected)
        visits = {**inputs, "input_ids": inputs["input_ids"][:BATCH], "attention_mask": inputs["attention_mask"][:BATCH]}
        out = model(**visits, return_loss=True)  # one report per visit, shared by its CXR and ECG
        text = out.text_embeds
        expected = clip_loss(out.cxr_embeds @ text.T / 0.07) + clip_loss(out.ecg_embeds @ text.T / 0.07)
    torch.testing.assert_close(out.loss, expected)


def test_forward_refuses_the_training_loss_inputs():
    with pytest.raises(TypeError, match=r"\['pair_index', 'text_group_ids'\].*batch_loss"):
        tiny_model()(**batch(), text_group_ids=torch.arange(6), pair_index=torch.tensor([[0, 0]]))


def test_output_flags_from_arguments_or_config_and_tuples():
    model, inputs = tiny_model(), batch()
    model.set_attn_implementation("eager")
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True, output_attentions=True)
        plain = model(**inputs)
        model.config.output_hidden_states = True
        from_config = model(**inputs)
        as_tuple = model(**inputs, return_dict=False)
    for tower, count in {"ecg": 2, "text": 2}.items():
        tower_output = out[f"{tower}_model_output"]
        assert len(tower_output.hidden_states) == count + 1 and len(tower_output.attentions) == count
        assert plain[f"{tower}_model_output"].hidden_states is None
        assert len(from_config[f"{tower}_model_output"].hidden_states) == count + 1
    assert out.cxr_model_output.last_hidden_state.shape[0] == BATCH
    assert isinstance(as_tuple, tuple) and isinstance(as_tuple[-1], tuple)  # the towers' outputs as tuples too
    torch.testing.assert_close(as_tuple[0], plain.logits_per_cxr)


def test_main_input_is_forwards_first_argument():
    import inspect

    model = tiny_model()
    assert next(iter(inspect.signature(model.forward).parameters)) == model.main_input_name == "ecg_values"
    with torch.no_grad():
        torch.testing.assert_close(model(batch()["ecg_values"]).ecg_embeds, model(ecg_values=batch()["ecg_values"]).ecg_embeds)


def test_input_embeddings_are_the_text_towers_so_peft_input_gradients_work():
    model = tiny_model().train()
    assert model.get_input_embeddings() is model.text_model.embeddings.word_embeddings
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    model.enable_input_require_grads()
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["query", "value"]))
    peft_model(**batch(), return_loss=True).loss.backward()
    # Reentrant checkpointing of a frozen tower passes gradients on only where its input requires them.
    lora_b = [p for name, p in peft_model.named_parameters() if "lora_B" in name]
    assert lora_b and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_attn_implementation_reaches_the_ecg_and_text_towers(tmp_path, implementation):
    tiny_model().save_pretrained(tmp_path)
    loaded = MedBindModel.from_pretrained(tmp_path, attn_implementation=implementation)
    assert loaded.config.ecg_config._attn_implementation == implementation
    assert loaded.text_model.config._attn_implementation == implementation
    assert all(layer.attention.config._attn_implementation == implementation for layer in loaded.ecg_model.layers)


def test_eager_and_sdpa_attention_agree():
    model, inputs = tiny_model(), batch()
    with torch.no_grad():
        sdpa = model(**inputs)
        model.set_attn_implementation("eager")
        eager = model(**inputs)
    for name in ("cxr_embeds", "ecg_embeds", "text_embeds"):
        torch.testing.assert_close(eager[name], sdpa[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("modality", ["cxr", "ecg"])
def test_single_modality_batches_train(modality):
    model, inputs = tiny_model().train(), batch()
    values = {"cxr": "pixel_values", "ecg": "ecg_values"}[modality]
    reports = {"input_ids": inputs["input_ids"][:BATCH], "attention_mask": inputs["attention_mask"][:BATCH]}
    out = model(**{values: inputs[values]}, **reports, return_loss=True)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    tower = model.cxr_model if modality == "cxr" else model.ecg_model
    assert all(p.grad is not None for p in tower.parameters())


@pytest.mark.parametrize("variant, absent", [("ecg-clip", "cxr"), ("cxr-clip", "ecg")])
def test_single_modality_variants_have_no_tower_of_the_other(variant, absent):
    model = tiny_model(variant=variant)
    assert getattr(model, f"{absent}_model") is None and getattr(model, f"{absent}_projection") is None
    assert not any(name.startswith(absent) for name, _ in model.named_parameters())
    with pytest.raises(ValueError, match=f"no {absent.upper()} tower"):
        model(**batch())


def test_cxr_clip_learns_cxr_against_reports():
    model, inputs = tiny_model(variant="cxr-clip"), batch()
    reports = {"input_ids": inputs["input_ids"][:BATCH], "attention_mask": inputs["attention_mask"][:BATCH]}
    out = model(pixel_values=inputs["pixel_values"], **reports, return_loss=True)
    assert torch.isfinite(out.loss) and out.ecg_embeds is None and out.logits_per_ecg is None
    # Its training loss is TMCL of the CXRs against their reports alone: no EMCL term.
    training = embeddings_loss(model, out.cxr_embeds, None, out.text_embeds, torch.arange(BATCH))
    assert training.emcl_loss is None and torch.equal(training.loss, training.tmcl_loss)


def test_bad_inputs_are_explained():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"\[batch, 12 leads, 1000 samples\]"):
        model.get_ecg_features(torch.randn(2, 8, 1000))
    with pytest.raises(ValueError, match="one report per sample"):
        model(ecg_values=torch.randn(2, 12, 1000), return_loss=True)
    with pytest.raises(ValueError, match=r"one report per sample.*3 \+ 3 rows.*got 4"):
        model(**{**batch(), "input_ids": batch()["input_ids"][:4], "attention_mask": batch()["attention_mask"][:4]},
              return_loss=True)


@pytest.mark.parametrize("position_embedding_type", ["learned", "sinusoidal"])
@pytest.mark.parametrize("patch_size", [1, 10])
def test_ecg_tower_tokenisation_options(patch_size, position_embedding_type):
    model = tiny_model(ecg_config={"patch_size": patch_size, "position_embedding_type": position_embedding_type})
    embeddings = model.ecg_model.embeddings
    assert embeddings.position_embedding.shape == (1, 1000 // patch_size + 1, 64)
    if position_embedding_type == "sinusoidal":
        # sin(0) and cos(0) at position 0, and a fixed (not learned) table
        torch.testing.assert_close(embeddings.position_embedding[0, 0, :2], torch.tensor([0.0, 1.0]))
        assert not any("position_embedding" in name for name, _ in model.ecg_model.named_parameters())
    with torch.no_grad():
        assert model.get_ecg_features(torch.randn(2, 12, 1000)).pooler_output.shape == (2, 256)


def test_ecg_embedding_depends_on_time_order():
    model, ecg = tiny_model(), torch.randn(1, 12, 1000)
    with torch.no_grad():
        forward, backward = model(ecg).ecg_embeds, model(ecg.flip(-1)).ecg_embeds
        assert not torch.allclose(forward, backward, atol=1e-4)


@pytest.mark.parametrize("cxr_config", [None, TINY_SWIN], ids=["resnet", "swin"])
def test_gradient_checkpointing_reaches_all_three_towers_and_keeps_gradients(cxr_config):
    inputs = batch()
    overrides = {"cxr_config": cxr_config} if cxr_config else {}

    def gradients(model):
        model(**inputs, return_loss=True).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    plain = gradients(tiny_model(**overrides).train())
    model = tiny_model(**overrides).train()
    model.activation_checkpointing_enable()
    assert any(getattr(module, "grad_checkpointing", False) for module in model.cxr_model.model.modules())
    assert all(layer.gradient_checkpointing for layer in model.text_model.encoder.layer)
    assert all(layer.gradient_checkpointing for layer in model.ecg_model.layers)
    checkpointed = gradients(model)
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-4, atol=1e-6)


def test_learnable_temperature_starts_at_tau_and_learns():
    model = tiny_model(learnable_temperature=True).train()
    assert model.temperature.item() == pytest.approx(0.07, rel=1e-5)
    model(**batch(), return_loss=True).loss.backward()
    assert model.logit_scale.grad is not None and model.logit_scale.grad.abs().item() > 0


@pytest.mark.parametrize("cxr_config", [None, TINY_SWIN], ids=["resnet", "swin"])
def test_save_writes_safetensors_and_auto_model_reloads_identically(tmp_path, cxr_config):
    # Swin's relative-position index is a non-persistent buffer: from_pretrained must rebuild it, not leave it empty.
    overrides = {"cxr_config": cxr_config} if cxr_config else {}
    model, inputs = tiny_model(ecg_config={"position_embedding_type": "sinusoidal"}, **overrides), batch()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin")) + list(tmp_path.glob("*.pt"))
    assert set(load_file(tmp_path / "model.safetensors")) == set(model.state_dict())
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded, MedBindModel)
    with torch.no_grad():
        expected, got = model(**inputs), reloaded(**inputs)
        for key in ("logits_per_cxr", "logits_per_ecg", "logits_per_text", "cxr_embeds", "ecg_embeds", "text_embeds"):
            torch.testing.assert_close(got[key], expected[key])


@pytest.mark.slow
def test_hub_folder_loads_with_remote_code_where_the_package_is_absent(tmp_path, run_without_medbind):
    model = tiny_model(cxr_config=TINY_SWIN)
    model_dir = tmp_path / "medbind-tiny"
    model.save_pretrained(model_dir)
    config = (model_dir / "config.json").read_text()
    assert '"AutoModel": "modeling_medbind.MedBindModel"' in config
    files = {p.name for p in model_dir.iterdir()}
    assert {"modeling_medbind.py", "configuration_medbind.py"} <= files
    assert "losses.py" not in files and "tokenizer.py" not in files  # training code stays out of the remote code
    inputs = batch(seed=3)
    torch.save(inputs, tmp_path / "inputs.pt")
    with torch.no_grad():
        expected = model(**inputs)
    run_without_medbind(
        f"""
import torch
from transformers import AutoModel
torch.set_num_threads({torch.get_num_threads()})  # the same kernels as this process, for bit-identical results
model = AutoModel.from_pretrained({str(model_dir)!r}, trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
inputs = torch.load({str(tmp_path / "inputs.pt")!r})
with torch.no_grad():
    out = model(**inputs)
torch.save({{k: out[k] for k in ("cxr_embeds", "ecg_embeds", "text_embeds", "logits_per_cxr")}},
           {str(tmp_path / "remote.pt")!r})
"""
    )
    remote = torch.load(tmp_path / "remote.pt")
    for key, value in remote.items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)


def test_from_backbones_loads_a_local_bert_into_the_text_tower_and_leaves_the_callers_config(tmp_path, monkeypatch):
    torch.manual_seed(1)
    bert = BertModel(
        BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
        add_pooling_layer=False,
    )
    bert.save_pretrained(tmp_path / "tiny-bert")
    built, build_bert = [], BertModel.__init__

    def counted(self, *args, **kwargs):
        built.append(self)
        build_bert(self, *args, **kwargs)

    monkeypatch.setattr(BertModel, "__init__", counted)
    config = MedBindConfig.from_preset("tiny")
    before = config.to_dict()
    model = MedBindModel.from_backbones(config=config, text=tmp_path / "tiny-bert", cxr=None)
    assert config.to_dict() == before and config.text_config.hidden_size == 64
    assert model.config is not config and model.config.text_config.hidden_size == 32
    assert model.text_projection.in_features == 32
    # The loaded BERT is the tower: no random one was built to be overwritten (which would hold it twice).
    assert built == [model.text_model]
    for name, value in bert.state_dict().items():
        torch.testing.assert_close(model.text_model.state_dict()[name], value)


def test_from_backbones_keeps_the_pretrained_cxr_weights_and_names_the_backbone(monkeypatch):
    create_model = timm.create_model

    def pretrained_offline(name, pretrained=False, **kwargs):
        # Stand-in for timm's download: the "pretrained" weights are a constant a fresh init never gives.
        model = create_model(name, pretrained=False, **kwargs)
        if pretrained:
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.fill_(0.5)
        return model

    monkeypatch.setattr(timm, "create_model", pretrained_offline)
    config = MedBindConfig.from_preset("tiny")
    model = MedBindModel.from_backbones(config=config, text=None, cxr="resnet10t")
    assert config.cxr_config.model_name == "resnet18" and config.cxr_config.model_kwargs is not None
    assert model.config.cxr_config.model_name == "resnet10t" and model.config.cxr_config.model_kwargs is None
    assert all(bool((parameter == 0.5).all()) for parameter in model.cxr_model.parameters())
    assert not (model.cxr_projection.weight == 0.5).all()  # the projection is new, and initialised


@pytest.mark.slow
@pytest.mark.parametrize("tower", ["text", "cxr"])
def test_from_backbones_offline_names_the_identifier_and_hf_hub_offline(tower, tmp_path):
    identifier = {"text": "dmis-lab/biobert-v1.1", "cxr": "swin_tiny_patch4_window7_224"}[tower]
    other = {"text": "cxr", "cxr": "text"}[tower]
    code = f"""
from modeling_medbind import MedBindConfig, MedBindModel
try:
    MedBindModel.from_backbones(config=MedBindConfig.from_preset("tiny"), {tower}={identifier!r}, {other}=None)
except OSError as error:
    print(error)
else:
    raise SystemExit("loading succeeded offline")
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-cache")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert identifier in result.stdout and "HF_HUB_OFFLINE" in result.stdout
