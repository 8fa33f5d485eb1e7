"""Streamed pretraining: slots from `datasets.IterableDataset`s, per-node splits, the collator and the Trainer."""

import math
from collections import Counter

import datasets
import numpy as np
import pytest
from medbind_training.data import MedBindPretrainingCollator, PretrainingDataset, pair_rows
from medbind_training.streaming import StreamingPretrainingDataset, interleave, visit_pair_map
from medbind_training.trainer import MedBindTrainer
from samples import cxr_dataset, ecg_dataset
from torch.utils.data import DataLoader
from transformers import TrainingArguments

from modeling_medbind import MedBindConfig, MedBindModel

CXR_FIRST, ECG_FIRST = 100, 500  # the helpers' first study ids


def streams(num_cxr: int, num_ecg: int, num_shards: int = 2) -> tuple[datasets.IterableDataset, ...]:
    """The helpers' CXR and ECG datasets as streams of `num_shards` shards each."""
    return (cxr_dataset(num_cxr, CXR_FIRST).to_iterable_dataset(num_shards=num_shards),
            ecg_dataset(num_ecg, ECG_FIRST).to_iterable_dataset(num_shards=num_shards))  # fmt: skip


def same_visit(num_pairs: int) -> dict[int, int]:
    """CXR i and ECG i are a visit pair for i < num_pairs."""
    return {CXR_FIRST + i: ECG_FIRST + i for i in range(num_pairs)}


def studies(slots: list[dict], modality: str) -> list[int]:
    return [slot[modality]["study_id"] for slot in slots if slot[modality] is not None]


def test_every_sample_is_dealt_once_and_the_shorter_stream_fills_the_rest():
    slots = list(StreamingPretrainingDataset(*streams(6, 10), buffer_size=4))
    assert len(slots) == 10 and not any(slot["paired"] for slot in slots)
    assert sorted(studies(slots, "ecg")) == list(range(ECG_FIRST, ECG_FIRST + 10))
    cxr_uses = Counter(studies(slots, "cxr"))
    assert set(cxr_uses) == set(range(CXR_FIRST, CXR_FIRST + 6)) and set(cxr_uses.values()) <= {1, 2}
    assert sum(cxr_uses.values()) == 10


def test_visit_pairs_come_out_as_paired_slots():
    slots = list(StreamingPretrainingDataset(*streams(8, 8), pairs=same_visit(6), buffer_size=16))
    paired = sorted((slot["cxr"]["study_id"], slot["ecg"]["study_id"]) for slot in slots if slot["paired"])
    assert paired == sorted(same_visit(6).items())
    assert sorted(studies(slots, "cxr")) == list(range(CXR_FIRST, CXR_FIRST + 8))  # each once, paired or not
    assert sorted(studies(slots, "ecg")) == list(range(ECG_FIRST, ECG_FIRST + 8))
    assert all(slot["key"][2] == int(slot["paired"]) for slot in slots)


def test_partners_pair_up_however_far_apart_the_streams_carry_them():
    cxr = cxr_dataset(8, CXR_FIRST).to_iterable_dataset(num_shards=1)
    # ECG i sits at position 7 - i, and the shuffle buffer holds one row: order no longer decides who pairs.
    ecg = ecg_dataset(8, ECG_FIRST).select(range(7, -1, -1)).to_iterable_dataset(num_shards=1)
    slots = list(StreamingPretrainingDataset(cxr, ecg, pairs=same_visit(8), buffer_size=1))
    paired = sorted((slot["cxr"]["study_id"], slot["ecg"]["study_id"]) for slot in slots if slot["paired"])
    assert paired == sorted(same_visit(8).items()) and len(slots) == 8


def mimic_ordered(num_cxr: int, num_ecg: int, num_pairs: int, seed: int = 0):
    """
    Datasets as the MIMIC builders write them: each modality sorted by its own study ids, and visit pairs that link
    studies at unrelated positions (a random matching), as MIMIC-PAIR does.
    """
    rng = np.random.default_rng(seed)
    cxr_rows = rng.choice(num_cxr, num_pairs, replace=False)
    ecg_rows = rng.choice(num_ecg, num_pairs, replace=False)
    table = datasets.Dataset.from_dict({"cxr_study_id": (CXR_FIRST + cxr_rows).tolist(),
                                        "ecg_study_id": (ECG_FIRST + ecg_rows).tolist()})  # fmt: skip
    return cxr_dataset(num_cxr, CXR_FIRST), ecg_dataset(num_ecg, ECG_FIRST), table


def pairs_per_batch(slots, batch_size: int) -> float:
    batches = [slots[start : start + batch_size] for start in range(0, len(slots) - batch_size + 1, batch_size)]
    return float(np.mean([sum(bool(slot["paired"]) for slot in batch) for batch in batches]))


def test_mimic_ordered_streams_give_the_map_style_pairs_per_batch():
    cxr, ecg, table = mimic_ordered(num_cxr=120, num_ecg=140, num_pairs=40)
    map_style = PretrainingDataset(cxr, ecg, pair_rows(cxr, ecg, table))
    expected = pairs_per_batch([{"paired": paired} for *_, paired in map_style.slots(seed=0, epoch=0)], 16)
    # A shuffle buffer far smaller than the distance between partners, as MIMIC's 1,000 against ~87k studies.
    streamed = StreamingPretrainingDataset(cxr.to_iterable_dataset(num_shards=4), ecg.to_iterable_dataset(num_shards=4),
                                           pairs=table, buffer_size=4)  # fmt: skip
    batches = list(DataLoader(streamed, batch_size=16, num_workers=2, collate_fn=lambda slots: slots))
    slots = [slot for batch in batches for slot in batch]
    assert len(slots) == len(map_style) and sum(slot["paired"] for slot in slots) == 40
    assert expected == pytest.approx(40 / len(map_style) * 16, rel=0.1)  # the map-style rate, ~4.6 per batch
    assert pairs_per_batch(slots, 16) == pytest.approx(expected, rel=0.1)
    # Every stretch of the epoch carries its share (each worker deals whole batches; its last may be short).
    assert min(sum(slot["paired"] for slot in batch) for batch in batches if len(batch) == 16) >= 4


def test_interleave_keeps_the_share_of_pairs_even_and_deals_every_slot():
    paired = [{"paired": True, "id": i} for i in range(3)]
    unpaired = [{"paired": False, "id": i} for i in range(9)]
    slots = list(interleave(iter(paired), iter(unpaired), 3, 9))
    assert [slot["paired"] for slot in slots] == [True, False, False, False] * 3  # one pair in every 4 slots
    # Counts are only the pace: an underestimate deals the rest of the longer source at the end.
    slots = list(interleave(iter(paired), iter(unpaired), 3, 3))
    assert sorted(slot["id"] for slot in slots if not slot["paired"]) == list(range(9)) and len(slots) == 12


def test_slots_are_a_function_of_seed_and_epoch():
    def order(seed: int, epoch: int) -> list[tuple]:
        dataset = StreamingPretrainingDataset(*streams(8, 8), pairs=same_visit(4), seed=seed, buffer_size=3)
        dataset.set_epoch(epoch)
        return [(slot["cxr"]["study_id"], slot["ecg"]["study_id"], slot["key"]) for slot in dataset]

    first, second_epoch = order(3, 1), order(3, 2)
    assert first == order(3, 1)
    assert [row[:2] for row in first] != [row[:2] for row in second_epoch]
    assert [row[:2] for row in first] != [row[:2] for row in order(4, 1)]
    # Keys seed the augmentation: no key of one epoch comes back in another.
    keys = [{value for *_, key in slots for value in key[:2]} for slots in (first, second_epoch)]
    assert not keys[0] & keys[1]


def test_two_nodes_get_disjoint_samples_that_cover_everything_and_keep_their_pairs():
    nodes = [
        list(StreamingPretrainingDataset(*streams(8, 8), pairs=same_visit(4), buffer_size=8, rank=rank, world_size=2))
        for rank in (0, 1)
    ]
    for modality, first in (("cxr", CXR_FIRST), ("ecg", ECG_FIRST)):
        seen = [set(studies(slots, modality)) for slots in nodes]
        assert seen[0] and seen[1] and not seen[0] & seen[1]
        assert seen[0] | seen[1] == set(range(first, first + 8))
    # Each node deals its share of the pairs, fetching partners from the index whichever node streams them.
    assert [sum(slot["paired"] for slot in slots) for slots in nodes] == [2, 2]


def test_dataloader_workers_share_the_shards_without_repeating_samples():
    dataset = StreamingPretrainingDataset(*streams(8, 8), pairs=same_visit(8), buffer_size=8)
    slots = list(DataLoader(dataset, batch_size=None, num_workers=2))
    assert sorted(studies(slots, "ecg")) == list(range(ECG_FIRST, ECG_FIRST + 8))
    assert sum(slot["paired"] for slot in slots) == 8
    assert len({tuple(slot["key"]) for slot in slots}) == 8  # workers offset their keys


def test_an_ecg_only_stream_deals_slots_without_cxr():
    slots = list(StreamingPretrainingDataset(None, ecg_dataset(5, ECG_FIRST).to_iterable_dataset(num_shards=2)))
    assert sorted(studies(slots, "ecg")) == list(range(ECG_FIRST, ECG_FIRST + 5))
    assert all(slot["cxr"] is None and slot["key"][0] == -1 and not slot["paired"] for slot in slots)


def test_invalid_streams_and_settings_are_refused():
    cxr, ecg = streams(2, 2)
    with pytest.raises(ValueError, match="needs a CXR stream"):
        StreamingPretrainingDataset(None, None)
    with pytest.raises(ValueError, match="need both"):
        StreamingPretrainingDataset(None, ecg, pairs=same_visit(1))
    with pytest.raises(ValueError, match="the cxr stream must be a datasets.IterableDataset"):
        StreamingPretrainingDataset(cxr_dataset(2), ecg)
    with pytest.raises(ValueError, match="buffer_size"):
        StreamingPretrainingDataset(cxr, ecg, buffer_size=0)
    with pytest.raises(ValueError, match="rank and world_size"):
        StreamingPretrainingDataset(cxr, ecg, rank=2, world_size=2)
    no_study = ecg_dataset(2).remove_columns("study_id").to_iterable_dataset()
    with pytest.raises(ValueError, match="needs a study_id"):
        list(StreamingPretrainingDataset(cxr, no_study, pairs=same_visit(2)))


def test_visit_pair_map_keeps_each_study_in_one_pair():
    pairs = datasets.Dataset.from_dict({"cxr_study_id": [1, 1, 3, 2], "ecg_study_id": [10, 11, 10, 12]})
    # 1-11 loses to 1's first link, 3-10 because ECG 10 is taken; a streamed table gives the same map.
    assert visit_pair_map(pairs) == visit_pair_map(pairs.to_iterable_dataset()) == {1: 10, 2: 12}
    with pytest.raises(ValueError, match="cxr_study_id"):
        visit_pair_map([{"cxr": 1, "ecg_study_id": 2}])


def test_collator_turns_streamed_slots_into_a_model_batch(medbind_processor):
    dataset = StreamingPretrainingDataset(*streams(4, 6), pairs=same_visit(2), buffer_size=8)
    loader = DataLoader(dataset, batch_size=6, collate_fn=MedBindPretrainingCollator(medbind_processor))
    slots = list(dataset)
    (batch,) = list(loader)
    assert batch["pixel_values"].shape == (6, 3, 224, 224)  # 4 CXRs and 2 refills
    assert batch["ecg_values"].shape == (6, 12, 1000)
    pairs = {(studies(slots, "cxr")[c], studies(slots, "ecg")[e]) for c, e in batch["pair_index"].tolist()}
    assert pairs == set(same_visit(2).items())


def test_trainer_takes_two_steps_on_a_stream_across_epochs(medbind_processor, tmp_path):
    config = MedBindConfig.from_preset("tiny")
    config.text_config.vocab_size = len(medbind_processor.tokenizer)
    dataset = StreamingPretrainingDataset(*streams(4, 4), pairs=same_visit(2), buffer_size=4)
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, use_cpu=True, report_to="none",
        remove_unused_columns=False, save_strategy="no", eval_strategy="no", logging_steps=1,
        accelerator_config={"dispatch_batches": False},
    )  # fmt: skip
    trainer = MedBindTrainer(
        model=MedBindModel(config), args=args, train_dataset=dataset,
        data_collator=MedBindPretrainingCollator(medbind_processor),
    )  # fmt: skip
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert trainer.state.global_step == 2 and len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert dataset.epoch == 1  # one batch per pass: the second step came from the next epoch, reshuffled
