"""Tests of training/medbind_training/augmentation.py: MedCLIP's CXR augmentation and the ECG Gaussian noise."""

import numpy as np
import pytest
import torch

from samples import gradient, intensities, process

from medbind_training.augmentation import CXRAugmentation, ECGNoiseAugmentation, cxr_augmentation
from modeling_medbind import MedBindConfig, MedBindImageProcessor

# Every random transform switched off: a test turns on the one it checks.
STILL = {"degrees": 0, "translate": 0, "scale": (1, 1), "flip_probability": 0, "brightness": 0, "contrast": 0}


@pytest.fixture
def batch(image_processor) -> torch.Tensor:
    images = [gradient(), gradient().T.copy(), np.flipud(gradient()).copy()]
    return process(image_processor, images)


def test_augmentation_is_reproducible_with_a_generator(batch):
    augment = CXRAugmentation()
    first = augment(batch, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(first, augment(batch, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(first, augment(batch, generator=torch.Generator().manual_seed(1)))
    assert first.shape == batch.shape and not torch.equal(first, batch)


@pytest.mark.parametrize("flip_probability", [0, 1], ids=["zero-ranges-identity", "certain-flip-mirrors-width"])
def test_zero_ranges_are_the_identity_and_a_certain_flip_mirrors_the_width(batch, flip_probability):
    augment = CXRAugmentation(**{**STILL, "flip_probability": flip_probability})
    torch.testing.assert_close(augment(batch), batch.flip(-1) if flip_probability else batch, atol=1e-4, rtol=0)


def test_brightness_jitter_scales_intensities_within_its_range(image_processor):
    gray = process(image_processor, np.full((224, 224), 0.5, np.float32)).expand(16, -1, -1, -1)
    augment = CXRAugmentation(**{**STILL, "brightness": 0.2})
    levels = intensities(augment(gray, generator=torch.Generator().manual_seed(0)), image_processor)
    per_image = levels.flatten(1)
    torch.testing.assert_close(per_image.min(1).values, per_image.max(1).values, atol=1e-5, rtol=0)
    assert per_image.min() >= 0.4 - 1e-5 and per_image.max() <= 0.6 + 1e-5
    assert per_image[:, 0].std() > 0.02  # images draw their own factors


def test_shift_moves_content_by_at_most_the_translate_fraction(image_processor):
    dot = np.zeros((224, 224), np.float32)
    dot[112, 112] = 1.0
    augment = CXRAugmentation(**{**STILL, "translate": 0.0625})
    moved = intensities(augment(process(image_processor, dot), generator=torch.Generator().manual_seed(3)), image_processor)
    row, column = divmod(int(moved[0, 0].argmax()), 224)
    assert abs(row - 112) <= 0.0625 * 224 + 1 and abs(column - 112) <= 0.0625 * 224 + 1


@pytest.mark.parametrize(
    ("augment", "unbatched", "message"),
    [(CXRAugmentation(), torch.zeros(3, 224, 224), "floating tensor \\[batch"),
     (ECGNoiseAugmentation(), torch.zeros(12, 1000), r"\[batch, leads, samples\]")],
    ids=["cxr", "ecg"],
)  # fmt: skip
def test_augmentations_reject_an_unbatched_input(augment, unbatched, message):
    with pytest.raises(ValueError, match=message):
        augment(unbatched)


def test_noise_augmentation_is_reproducible_and_has_the_configured_std():
    ecg_values = torch.zeros(8, 12, 1000)
    augment = ECGNoiseAugmentation(noise_std=0.05)
    first, again, other = (augment(ecg_values, generator=torch.Generator().manual_seed(seed)) for seed in (0, 0, 1))
    torch.testing.assert_close(first, again)
    assert not torch.equal(first, other)
    assert first.std().item() == pytest.approx(0.05, rel=0.02)
    assert first.shape == ecg_values.shape and first.dtype == ecg_values.dtype


def test_medclip_crop_takes_224_out_of_256_at_a_random_place_in_each_image():
    augment = CXRAugmentation(**STILL, crop_size=224)
    intensities = torch.rand(16, 3, 256, 256)  # in [0, 1], which the jitter's clamp leaves alone
    images = (intensities - augment.image_mean) / augment.image_std
    crops = augment(images, torch.Generator().manual_seed(0))
    assert crops.shape == (16, 3, 224, 224)
    corners = set()
    for image, crop in zip(images, crops):
        # The crop's top-left corner: where its first pixel sits in the image (all 33 x 33 places are possible).
        place = (image[0, :33, :33] - crop[0, 0, 0]).abs().argmin()
        top, left = int(place // 33), int(place % 33)
        # (The identity warp's float arithmetic moves values by ~1e-4; a crop one pixel off differs by ~1.)
        torch.testing.assert_close(crop, image[:, top : top + 224, left : left + 224], atol=1e-3, rtol=0)
        corners.add((top, left))
    assert len(corners) > 8  # each image draws its own place
    with pytest.raises(ValueError, match="cannot crop 224"):
        augment(torch.zeros(1, 3, 200, 256))


def test_the_paper_presets_augmentation_crops_and_the_demos_does_not():
    for preset, crop_size in (("paper", 224), ("tiny", None)):
        cxr_config = MedBindConfig.from_preset(preset).cxr_config
        processor = MedBindImageProcessor.from_cxr_config(cxr_config)
        augment = cxr_augmentation(cxr_config, processor)
        assert augment.crop_size == crop_size
        expected_mean = torch.tensor(processor.image_mean, dtype=torch.float32)
        torch.testing.assert_close(augment.image_mean.flatten(), expected_mean)
