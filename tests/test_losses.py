"""TMCL and EMCL (training/medbind_training/losses.py) against literal implementations of the paper's equations,
the MEDBind loss of a model's training batch, and the losses across processes."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from samples import load_script
from tiny_medbind import TINY_IMAGE_SIZE, tiny_model

from medbind_training.losses import batch_loss, emcl_loss, medbind_loss, tmcl_loss

TAU = 0.07


def random_embeds(rows: int, dim: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(rows, dim, generator=generator, dtype=torch.float64), dim=-1)


def tmcl_direction_by_loop(anchors, candidates, groups, tau):
    """-sum_i 1/|P(i)| sum_{p in P(i)} log(exp(a_i.c_p/tau) / sum_l exp(a_i.c_l/tau)), written as the paper does."""
    total = 0.0
    n = len(anchors)
    for i in range(n):
        positives = [p for p in range(n) if groups[p] == groups[i]]
        denominator = sum(math.exp(float(anchors[i] @ candidates[l]) / tau) for l in range(n))
        inner = sum(math.log(math.exp(float(anchors[i] @ candidates[p]) / tau) / denominator) for p in positives)
        total -= inner / len(positives)
    return total


def emcl_direction_by_loop(left, right, n, tau):
    """-sum_u log(exp(l_u.r_u/tau) / ((n/m) sum_q exp(l_u.r_q/tau))), written as the paper does."""
    m = len(left)
    total = 0.0
    for u in range(m):
        denominator = (n / m) * sum(math.exp(float(left[u] @ right[q]) / tau) for q in range(m))
        total -= math.log(math.exp(float(left[u] @ right[u]) / tau) / denominator)
    return total


def test_tmcl_matches_the_equation_written_as_loops():
    text, cxr = random_embeds(6, seed=1), random_embeds(6, seed=2)
    groups = torch.tensor([3, 1, 3, 2, 1, 5])
    expected = tmcl_direction_by_loop(text, cxr, groups, TAU) + tmcl_direction_by_loop(cxr, text, groups, TAU)
    assert tmcl_loss(text, cxr, groups, TAU).item() == pytest.approx(expected, rel=1e-10)


def test_identical_reports_are_positives():
    # Rows 0 and 1 carry the same report, embedded slightly differently (dropout during training does that). As
    # positives, each ECG is pulled towards both; plain InfoNCE (all groups distinct) pushes the other one away.
    text, ecg = random_embeds(4, seed=3), random_embeds(4, seed=4)
    text[1] = F.normalize(text[0] + 0.3 * random_embeds(1, seed=99)[0], dim=-1)
    shared = torch.tensor([7, 7, 8, 9])
    distinct = torch.tensor([0, 1, 2, 3])
    with_positives = tmcl_loss(text, ecg, shared, TAU)
    expected = tmcl_direction_by_loop(text, ecg, shared, TAU) + tmcl_direction_by_loop(ecg, text, shared, TAU)
    assert with_positives.item() == pytest.approx(expected, rel=1e-10)
    assert not torch.isclose(with_positives, tmcl_loss(text, ecg, distinct, TAU))


def test_tmcl_without_shared_reports_is_symmetric_infonce():
    text, cxr = random_embeds(5, seed=5), random_embeds(5, seed=6)
    logits = text @ cxr.T / TAU
    targets = torch.arange(5)
    infonce = F.cross_entropy(logits, targets, reduction="sum") + F.cross_entropy(logits.T, targets, reduction="sum")
    assert tmcl_loss(text, cxr, torch.arange(5), TAU).item() == pytest.approx(infonce.item(), rel=1e-10)


def test_emcl_matches_the_equation_written_as_loops():
    cxr, ecg = random_embeds(3, seed=7), random_embeds(3, seed=8)
    expected = emcl_direction_by_loop(cxr, ecg, 10, TAU) + emcl_direction_by_loop(ecg, cxr, 10, TAU)
    assert emcl_loss(cxr, ecg, batch_size=10, temperature=TAU).item() == pytest.approx(expected, rel=1e-10)


def test_emcl_pair_share_factor_shifts_value_not_gradient():
    cxr, ecg = random_embeds(4, seed=9).requires_grad_(), random_embeds(4, seed=10)
    small_batch = emcl_loss(cxr, ecg, batch_size=4)
    (grad_small,) = torch.autograd.grad(small_batch, cxr)
    large_batch = emcl_loss(cxr, ecg, batch_size=40)
    (grad_large,) = torch.autograd.grad(large_batch, cxr)
    # n/m inside the log adds m*log(n/m) per direction: 2 * 4 * log(10).
    assert (large_batch - small_batch).item() == pytest.approx(8 * math.log(10), rel=1e-10)
    torch.testing.assert_close(grad_small, grad_large)


def test_emcl_without_pairs_is_zero_and_keeps_the_graph():
    cxr, ecg = torch.zeros(0, 16, requires_grad=True), torch.zeros(0, 16, requires_grad=True)
    loss = emcl_loss(cxr, ecg, batch_size=8)
    assert loss.item() == 0.0 and not torch.isnan(loss)
    loss.backward()
    assert cxr.grad is not None and cxr.grad.shape == (0, 16)


def test_mean_reduction_divides_each_direction_by_its_anchor_count():
    text, cxr = random_embeds(6, seed=11), random_embeds(6, seed=12)
    groups = torch.tensor([0, 0, 1, 2, 3, 4])
    tmcl = {reduction: tmcl_loss(text, cxr, groups, reduction=reduction).item() for reduction in ("mean", "sum")}
    emcl = {reduction: emcl_loss(text[:3], cxr[:3], 6, reduction=reduction).item() for reduction in ("mean", "sum")}
    assert (tmcl["mean"], emcl["mean"]) == pytest.approx((tmcl["sum"] / 6, emcl["sum"] / 3), rel=1e-10)


def test_unknown_reduction_and_misaligned_inputs_are_rejected():
    text, cxr = random_embeds(4), random_embeds(3)
    with pytest.raises(ValueError, match="one text per modality sample"):
        tmcl_loss(text, cxr, torch.arange(4))
    with pytest.raises(ValueError, match="reduction"):
        tmcl_loss(text, text, torch.arange(4), reduction="max")
    with pytest.raises(ValueError, match="row-aligned"):
        emcl_loss(text, cxr, 8)
    with pytest.raises(ValueError, match="cannot exceed"):
        emcl_loss(text, text, 2)


def test_gradients_match_finite_differences():
    text, ecg = random_embeds(5, dim=6, seed=13).requires_grad_(), random_embeds(5, dim=6, seed=14).requires_grad_()
    groups = torch.tensor([0, 1, 0, 2, 3])
    assert torch.autograd.gradcheck(lambda t, e: tmcl_loss(t, e, groups, 0.5), (text, ecg))
    assert torch.autograd.gradcheck(lambda c, e: emcl_loss(c, e, 9, 0.5), (text[:3], ecg[:3]))


def test_learnable_temperature_gets_a_gradient():
    tau = torch.tensor(TAU, dtype=torch.float64, requires_grad=True)
    loss = tmcl_loss(random_embeds(4, seed=15), random_embeds(4, seed=16), torch.arange(4), tau)
    loss.backward()
    assert tau.grad is not None and tau.grad.abs().item() > 0


# --- two processes ----------------------------------------------------------------------------------------------

def training_batch(rows: int = 3) -> dict:
    """`rows` CXRs and ECGs, their reports (the CXRs', then the ECGs'), report groups and visit pairs."""
    generator = torch.Generator().manual_seed(0)
    return {
        "pixel_values": torch.randn(rows, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE, generator=generator),
        "ecg_values": torch.randn(rows, 12, 1000, generator=generator),
        "input_ids": torch.randint(5, 500, (2 * rows, 10), generator=generator),
        "text_group_ids": torch.tensor([4, 4, 9, 10, 11, 12]),  # the first two CXR reports are identical
        "pair_index": torch.tensor([[0, 2], [1, 0]]),
    }


def test_batch_loss_is_tmcl_per_modality_plus_emcl_on_the_models_embeddings():
    model, batch = tiny_model(), training_batch()
    groups = batch["text_group_ids"]
    with torch.no_grad():
        out = batch_loss(model, batch)
        cxr_text, ecg_text = out.text_embeds[:3], out.text_embeds[3:]
        expected_tmcl = tmcl_loss(cxr_text, out.cxr_embeds, groups[:3]) + tmcl_loss(ecg_text, out.ecg_embeds, groups[3:])
        expected_emcl = emcl_loss(out.cxr_embeds[[0, 1]], out.ecg_embeds[[2, 0]], 3)
    torch.testing.assert_close(out.tmcl_loss, expected_tmcl)
    torch.testing.assert_close(out.emcl_loss, expected_emcl)
    torch.testing.assert_close(out.loss, expected_tmcl + expected_emcl)


def test_bd_without_pairs_has_zero_emcl_and_nm_has_none():
    batch = training_batch()
    with torch.no_grad():
        bound = batch_loss(tiny_model(), {**batch, "pair_index": torch.zeros(0, 2, dtype=torch.long)})
        normal = batch_loss(tiny_model(variant="nm"), batch)
    assert bound.emcl_loss.item() == 0.0 and normal.emcl_loss is None
    torch.testing.assert_close((bound.loss, normal.loss), (bound.tmcl_loss, normal.tmcl_loss))


def test_medbind_loss_explains_bad_batches():
    text, cxr = random_embeds(6), random_embeds(3, seed=1)
    with pytest.raises(ValueError, match="CXR or ECG"):
        medbind_loss(None, None, text, TAU, "bd")
    with pytest.raises(ValueError, match=r"one report per sample.*3 \+ 0 = 3.*got 6 texts"):
        medbind_loss(cxr, None, text, TAU, "bd")
    with pytest.raises(ValueError, match="pair_index"):
        medbind_loss(None, cxr, text[:3], TAU, "bd", pair_index=torch.tensor([[0, 0]]))


DISTRIBUTED_SCRIPT = Path(__file__).parent / "distributed" / "loss_equivalence.py"


@pytest.mark.slow
def test_two_processes_equal_one_process_on_the_same_global_batch(accelerate_launch, tmp_path):
    script = load_script(DISTRIBUTED_SCRIPT)
    accelerate_launch(DISTRIBUTED_SCRIPT, tmp_path)
    reference = script.single_process_reference()
    world_size = 2
    for rank in range(world_size):
        result = load_file(tmp_path / f"rank{rank}.safetensors")
        rows = {"tmcl": script.SPLITS[world_size][rank], "emcl": script.PAIR_SPLITS[world_size][rank]}
        for name in ("tmcl", "emcl"):
            torch.testing.assert_close(result[f"{name}_loss"], reference[f"{name}_loss"])
            # Each process's local gradient is world_size x the single-process one (the gather sums every
            # process's backward); DDP's mean over processes brings it back, as the model-level check below shows.
            torch.testing.assert_close(result[f"{name}_grad"] / world_size, reference[f"{name}_grad"][rows[name]])
    distributed_grads = load_file(tmp_path / "model_grads.safetensors")
    assert distributed_grads.pop("__loss__").item() == pytest.approx(reference["model_loss"].item(), rel=1e-5)
    assert distributed_grads.keys() == reference["model_grads"].keys() and len(distributed_grads) > 20
    for name, grad in distributed_grads.items():
        torch.testing.assert_close(grad, reference["model_grads"][name], rtol=1e-4, atol=1e-5)
