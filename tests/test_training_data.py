"""Pretraining batches: visit pairs, per-epoch slots, the sampler and the collator."""

from collections import Counter

import datasets
import numpy as np
import pytest
import torch

from medbind_training.data import MedBindPretrainingCollator, PretrainingDataset, SlotSampler, pair_rows
from samples import cxr_dataset, ecg_dataset, write_record


def test_pair_rows_maps_studies_to_rows_and_keeps_each_sample_in_one_pair():
    cxr, ecg = cxr_dataset(4), ecg_dataset(5)
    links = {"cxr_study_id": [101, 101, 103, 999, 102], "ecg_study_id": [502, 503, 502, 500, 504]}
    pairs = datasets.Dataset.from_dict(links)
    # 101-503 loses to 101's first link; 103-502 loses because ECG 502 is taken; 999 is in another split.
    assert pair_rows(cxr, ecg, pairs) == [(1, 2), (2, 4)]


def test_every_sample_is_dealt_each_epoch_and_pairs_stay_pairs():
    pairs = [(0, 3), (2, 1), (5, 0)]
    dataset = PretrainingDataset(cxr_dataset(6), ecg_dataset(10), pairs)
    slots = dataset.slots(seed=0, epoch=0)
    assert len(slots) == len(dataset) == 3 + (10 - 3)
    paired = [(c, e) for c, e, flag in slots if flag]
    assert sorted(paired) == sorted(pairs)
    unpaired = [(c, e) for c, e, flag in slots if not flag]
    assert Counter(e for _, e in unpaired) == Counter(e for e in range(10) if e not in {3, 1, 0})  # each ECG once
    # The 3 unpaired CXRs are cycled to fill 7 unpaired slots: each used at least twice, at most three times.
    cxr_uses = Counter(c for c, _ in unpaired)
    assert set(cxr_uses) == {1, 3, 4} and set(cxr_uses.values()) <= {2, 3}


def test_slots_are_a_function_of_seed_and_epoch():
    dataset = PretrainingDataset(cxr_dataset(8), ecg_dataset(8), [(0, 0), (1, 1), (2, 2), (3, 3)], pair_fraction=0.5)
    assert dataset.slots(3, 1) == dataset.slots(3, 1) not in (dataset.slots(3, 2), dataset.slots(4, 1))
    assert sum(flag for *_, flag in dataset.slots(3, 1)) == 2  # half of the pairs, a different half per epoch
    chosen = [{(c, e) for c, e, flag in dataset.slots(3, epoch) if flag} for epoch in range(6)]
    assert len({frozenset(pairs) for pairs in chosen}) > 1


def test_sampler_follows_the_epoch_it_is_given():
    dataset = PretrainingDataset(cxr_dataset(5), ecg_dataset(5), [(0, 0)])
    sampler = SlotSampler(dataset, seed=7)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) == dataset.slots(7, 1) != first
    assert len(sampler) == len(first) == 5


def test_ecg_only_and_unpaired_runs_deal_no_pairs():
    ecg_only = PretrainingDataset(None, ecg_dataset(4))
    assert sorted(ecg_only.slots(0, 0)) == [(-1, e, 0) for e in range(4)]
    no_pairs = PretrainingDataset(cxr_dataset(3), ecg_dataset(3), [(0, 0)], pair_fraction=0.0)
    assert not any(flag for *_, flag in no_pairs.slots(0, 0))
    with pytest.raises(ValueError, match="need both"):
        PretrainingDataset(None, ecg_dataset(2), [(0, 0)])
    with pytest.raises(ValueError, match="pair_fraction"):
        PretrainingDataset(cxr_dataset(2), ecg_dataset(2), pair_fraction=1.5)


def test_collator_builds_model_inputs_with_pair_positions(medbind_processor):
    cxr, ecg = cxr_dataset(4), ecg_dataset(4)
    dataset = PretrainingDataset(cxr, ecg, [(1, 2), (3, 0)])
    keys = dataset.slots(0, 0)
    batch = MedBindPretrainingCollator(medbind_processor)([dataset[key] for key in keys])
    assert batch["pixel_values"].shape == (4, 3, 224, 224)
    assert batch["ecg_values"].shape == (4, 12, 1000)
    assert batch["input_ids"].shape[0] == batch["attention_mask"].shape[0] == 8  # the CXRs' reports, then the ECGs'
    assert batch["text_group_ids"].dtype == torch.int64 and batch["text_group_ids"].shape == (8,)
    cxr_reports = medbind_processor(text=[cxr[key[0]]["text"] for key in keys], return_tensors="pt")["input_ids"]
    torch.testing.assert_close(batch["input_ids"][:4, : cxr_reports.shape[1]], cxr_reports)
    pairs = {(keys[c][0], keys[e][1]) for c, e in batch["pair_index"].tolist()}
    assert pairs == {(1, 2), (3, 0)}
    expected_ecg = medbind_processor(ecgs=[np.asarray(ecg[keys[0][1]]["ecg"])], sampling_rate=100, return_tensors="pt")
    torch.testing.assert_close(batch["ecg_values"][0], expected_ecg["ecg_values"][0])


def test_identical_reports_share_a_group_id_in_the_batch(medbind_processor):
    dataset = PretrainingDataset(None, ecg_dataset(6))
    slots = [dataset[(-1, e, 0)] for e in range(6)]
    batch = MedBindPretrainingCollator(medbind_processor)(slots)
    groups = batch["text_group_ids"].tolist()
    # rows 1, 2, 4, 5 read "ECG presents sinus rhythm."; rows 0 and 3 differ from every other row
    assert groups[1] == groups[2] == groups[4] == groups[5]
    assert len({groups[0], groups[3], groups[1]}) == 3
    assert "pixel_values" not in batch and batch["pair_index"].shape == (0, 2)


def test_collator_reads_wfdb_records_by_path_at_their_own_rate(medbind_processor, tmp_path):
    write_record(tmp_path, "rec1", np.random.default_rng(2).standard_normal((12, 5000)), 500)
    row = {"ecg_path": str(tmp_path / "rec1"), "sampling_rate": 500, "text": "ECG presents sinus rhythm."}
    batch = MedBindPretrainingCollator(medbind_processor)([{"cxr": None, "ecg": row, "paired": False}])
    expected = medbind_processor(ecgs=[str(tmp_path / "rec1")], return_tensors="pt")["ecg_values"]
    torch.testing.assert_close(batch["ecg_values"], expected)


def test_augmentations_apply_only_when_given_and_depend_on_the_batch_not_the_global_rng(medbind_processor):
    from medbind_training.augmentation import CXRAugmentation, ECGNoiseAugmentation

    dataset = PretrainingDataset(cxr_dataset(2), ecg_dataset(2))
    slots = [dataset[key] for key in dataset.slots(0, 0)]
    plain = MedBindPretrainingCollator(medbind_processor)(slots)
    augment = MedBindPretrainingCollator(medbind_processor, CXRAugmentation(), ECGNoiseAugmentation(0.1), seed=3)
    torch.manual_seed(0)
    augmented = augment(slots)
    assert not torch.allclose(plain["pixel_values"], augmented["pixel_values"])
    noise = augmented["ecg_values"] - plain["ecg_values"]
    assert 0.05 < noise.std().item() < 0.2
    torch.testing.assert_close(plain["input_ids"], augmented["input_ids"])
    # A resumed run re-collates a batch after restoring the global RNG elsewhere: the result must not change.
    torch.manual_seed(1234)
    torch.testing.assert_close(augment(slots)["pixel_values"], augmented["pixel_values"])
    other_seed = MedBindPretrainingCollator(medbind_processor, CXRAugmentation(), ECGNoiseAugmentation(0.1), seed=4)
    assert not torch.allclose(other_seed(slots)["ecg_values"], augmented["ecg_values"])


def test_a_random_crop_augmentation_takes_the_processors_uncropped_resize(medbind_processor):
    from medbind_training.augmentation import CXRAugmentation
    from modeling_medbind import MedBindImageProcessor, MedBindProcessor

    processor = MedBindProcessor(MedBindImageProcessor.from_medclip(), medbind_processor.feature_extractor,
                                 medbind_processor.tokenizer)  # fmt: skip
    dataset = PretrainingDataset(cxr_dataset(2), None)
    slots = [dataset[key] for key in dataset.slots(0, 0)]
    still = {"degrees": 0, "translate": 0, "scale": (1, 1), "flip_probability": 0, "brightness": 0, "contrast": 0}
    cropped = MedBindPretrainingCollator(processor, CXRAugmentation(**still, crop_size=224))(slots)["pixel_values"]
    assert cropped.shape[-2:] == (224, 224)
    images = [slot["cxr"]["image"] for slot in slots]
    resized = processor.image_processor(images, do_center_crop=False, return_tensors="pt")
    assert resized["pixel_values"].shape[-2:] == (256, 256)
    # Without a random crop the processor crops the centre, as at inference.
    centred = MedBindPretrainingCollator(processor)(slots)["pixel_values"]
    torch.testing.assert_close(centred, resized["pixel_values"][..., 16:240, 16:240])
