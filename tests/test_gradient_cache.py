"""Gradient caching: a batch embedded in chunks takes the whole batch's loss and gradients, in one process or two."""

from pathlib import Path

import pytest
import torch
from medbind_training.gradient_cache import chunk_batch, gradient_cached_step
from medbind_training.losses import batch_loss, medbind_loss
from safetensors.torch import load_file
from samples import load_script

from modeling_medbind import MedBindConfig, MedBindModel

# A LayerNorm CXR tower (a tiny Swin, as the paper's): the tiny preset's ResNet normalises with per-chunk batch
# statistics in training mode, which chunking changes (see the module docstring). 56 pixels: 14 x 14 patches, two
# windows of 7 per side, so float64 stays fast.
IMAGE_SIZE = 56
SWIN = {
    "model_name": "swin_tiny_patch4_window7_224", "image_size": IMAGE_SIZE,
    "model_kwargs": {"embed_dim": 16, "depths": [1, 1], "num_heads": [1, 2]},
}  # fmt: skip
NO_DROPOUT = {
    "ecg_config": {"hidden_dropout_prob": 0.0, "attention_dropout": 0.0, "patch_size": 50},
    "text_config": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
}
DISTRIBUTED = Path(__file__).parent / "distributed"


def swin_model(variant: str = "bd", dropout: bool = False, **overrides) -> MedBindModel:
    torch.manual_seed(0)
    config = MedBindConfig.from_preset("tiny", variant=variant, cxr_config=SWIN, **({} if dropout else NO_DROPOUT),
                                       **overrides)  # fmt: skip
    # float64: the chunked and whole-batch sums differ in rounding order only, which float32 would make visible.
    return MedBindModel(config).double().train()


def training_batch(num_cxr: int = 5, num_ecg: int = 5) -> dict[str, torch.Tensor]:
    """A batch with identical reports across modalities (TMCL positives) and visit pairs spread over the rows."""
    generator = torch.Generator().manual_seed(3)
    num_texts = num_cxr + num_ecg
    pairs = [(0, 4), (2, 1), (4, 0)]
    return {
        "pixel_values": torch.randn(num_cxr, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator, dtype=torch.float64),
        "ecg_values": torch.randn(num_ecg, 12, 1000, generator=generator, dtype=torch.float64),
        "input_ids": torch.randint(5, 200, (num_texts, 9), generator=generator),
        "attention_mask": torch.ones(num_texts, 9, dtype=torch.long),
        "text_group_ids": torch.tensor([0, 1, 0, 2, 3, 1, 4, 0, 5, 6][:num_texts]),
        "pair_index": torch.tensor([[c, e] for c, e in pairs if c < num_cxr and e < num_ecg]).reshape(-1, 2),
    }


def cached_step(model: MedBindModel, batch: dict, chunk_size: int | None) -> tuple[torch.Tensor, dict]:
    """The loss and gradients of a gradient-cached step in chunks of `chunk_size`, or of a whole-batch step (None)."""
    model.zero_grad(set_to_none=True)
    if chunk_size is None:
        output = batch_loss(model, batch)
        output.loss.backward()
    else:
        output = gradient_cached_step(model, batch, chunk_size)
    return output, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_same_step(expected, got) -> None:
    (expected_output, expected_grads), (output, grads) = expected, got
    for name in ("loss", "tmcl_loss", "emcl_loss"):
        if expected_output.get(name) is None:  # a ModelOutput leaves out its None fields
            assert output.get(name) is None, name
            continue
        torch.testing.assert_close(output[name], expected_output[name].detach(), rtol=1e-9, atol=1e-9, msg=name)
    assert grads.keys() == expected_grads.keys() and len(grads) > 20
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], rtol=1e-7, atol=1e-9, msg=name)


def test_chunks_cover_every_row_once_and_keep_each_report_with_its_sample():
    batch = training_batch(num_cxr=5, num_ecg=3)
    chunks = chunk_batch(batch, chunk_size=2)
    assert [(c.cxr, c.ecg) for c in chunks] == [
        (slice(0, 2), slice(0, 2)), (slice(2, 4), slice(2, 3)), (slice(4, 5), slice(3, 3))
    ]  # fmt: skip
    texts = torch.arange(8)  # text rows 0-4: the CXRs' reports; 5-7: the ECGs'
    assert [chunk.rows("text", texts).tolist() for chunk in chunks] == [[0, 1, 5, 6], [2, 3, 7], [4]]
    last = chunks[2].model_inputs(batch)
    assert "ecg_values" not in last and last["input_ids"].shape[0] == 1
    with pytest.raises(ValueError, match="chunk_size"):
        chunk_batch(batch, chunk_size=0)


@pytest.mark.parametrize("chunk_size", [2, 3])
def test_chunked_step_takes_the_whole_batch_loss_and_gradients(chunk_size):
    model, batch = swin_model(), training_batch()
    reference = cached_step(model, batch, None)
    assert reference[0].emcl_loss > 0 and reference[0].tmcl_loss > 0
    assert_same_step(reference, cached_step(model, batch, chunk_size))


def test_chunked_step_is_exact_for_tmcl_alone_and_a_learned_temperature():
    model = swin_model(variant="nm", learnable_temperature=True)
    batch = training_batch(num_cxr=4, num_ecg=5)  # uneven modalities: the last chunk has ECGs only
    reference = cached_step(model, batch, None)
    assert reference[0].emcl_loss is None
    got = cached_step(model, batch, chunk_size=2)
    assert got[0].emcl_loss is None and "logit_scale" in got[1]
    assert_same_step(reference, got)


def test_dropout_masks_are_replayed_so_the_gradient_is_that_of_the_embeddings_used():
    # With dropout the chunked forward differs from the whole-batch one, but its gradient must be exact for the
    # chunked embeddings: the reference embeds the same chunks from the same random state, with the graph.
    model = swin_model(dropout=True)
    batch = training_batch()
    torch.manual_seed(7)
    got = cached_step(model, batch, chunk_size=2)

    torch.manual_seed(7)
    model.zero_grad(set_to_none=True)
    chunks = chunk_batch(batch, chunk_size=2)
    outputs = [model(**chunk.model_inputs(batch)) for chunk in chunks]
    texts = [output.text_embeds for output in outputs]
    cxr_texts = torch.cat([t[: c.cxr.stop - c.cxr.start] for t, c in zip(texts, chunks)])
    ecg_texts = torch.cat([t[c.cxr.stop - c.cxr.start :] for t, c in zip(texts, chunks)])
    loss, tmcl, emcl = medbind_loss(
        torch.cat([o.cxr_embeds for o in outputs]), torch.cat([o.ecg_embeds for o in outputs]),
        torch.cat([cxr_texts, ecg_texts]), model.temperature, model.config.variant, model.config.loss_reduction,
        batch["text_group_ids"], batch["pair_index"],
    )  # fmt: skip
    loss.backward()
    expected = {"loss": loss, "tmcl_loss": tmcl, "emcl_loss": emcl}
    assert_same_step((expected, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}), got)


def test_gradients_accumulate_with_the_loss_scale():
    model, batch = swin_model(), training_batch()
    _, whole = cached_step(model, batch, None)
    model.zero_grad(set_to_none=True)
    for _ in range(2):  # two micro-batches of gradient accumulation, each scaled by 1/2
        gradient_cached_step(model, batch, chunk_size=3, loss_scale=0.5)
    for name, parameter in model.named_parameters():
        if parameter.grad is not None:
            torch.testing.assert_close(parameter.grad, whole[name], rtol=1e-7, atol=1e-9, msg=name)


@pytest.mark.slow
def test_two_processes_in_chunks_take_the_single_process_step(accelerate_launch, tmp_path):
    # The script's batch and model: loss_equivalence's (tiny preset in eval mode), 4 of its 8 rows per process.
    batches = load_script(DISTRIBUTED / "loss_equivalence.py")
    accelerate_launch(DISTRIBUTED / "gradient_cache_equivalence.py", tmp_path)
    model = batches.tiny_model()
    output = batch_loss(model, batches.model_batch(slice(0, batches.GLOBAL_ROWS)))
    output.loss.backward()
    got = load_file(tmp_path / "chunked_grads.safetensors")
    for name in ("loss", "tmcl_loss", "emcl_loss"):
        assert got.pop(f"__{name}__").item() == pytest.approx(output[name].item(), rel=1e-5)
    expected = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert got.keys() == expected.keys()
    for name, grad in got.items():
        torch.testing.assert_close(grad, expected[name], rtol=1e-4, atol=1e-5, msg=name)
