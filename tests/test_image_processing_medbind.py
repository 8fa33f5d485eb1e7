"""Tests of modeling_medbind/image_processing_medbind.py: radiographs -> `pixel_values`."""

import math
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from pydicom import Dataset
from timm.data import create_transform, resolve_data_config
from timm.models import get_pretrained_cfg
from transformers import AutoProcessor
from transformers.dynamic_module_utils import get_imports

from medbind_processing.rsna import build_rsna
from medbind_training.tokenizer import train_wordpiece_tokenizer
from modeling_medbind import MedBindConfig, MedBindProcessor, image_processing_medbind
from modeling_medbind.configuration_medbind import MedBindCXRConfig
from modeling_medbind.image_processing_medbind import MedBindImageProcessor, decode_dicom, is_dicom
from fixtures.public import write_dicom
from samples import gradient, intensities, process

SWIN = "swin_tiny_patch4_window7_224"


def quantised(image: np.ndarray, maximum: int, dtype) -> np.ndarray:
    """`image` in [0, 1] stored as integers 0..maximum, rounded as an image writer would."""
    return np.round(image * maximum).astype(dtype)


@pytest.fixture(scope="module")
def processor() -> MedBindImageProcessor:
    return MedBindImageProcessor()


def test_plain_constructor_defaults_equal_timm_swin_tiny_config(processor):
    data_config = resolve_data_config(pretrained_cfg=get_pretrained_cfg(SWIN).to_dict())
    assert processor.to_dict() == MedBindImageProcessor.from_timm(SWIN).to_dict()
    assert (tuple(processor.image_mean), tuple(processor.image_std)) == (data_config["mean"], data_config["std"])
    assert (processor.crop_size.height, processor.crop_size.width) == data_config["input_size"][1:]
    assert processor.size.shortest_edge == math.floor(data_config["input_size"][1] / data_config["crop_pct"])
    assert processor.resample.name.lower() == data_config["interpolation"]


def test_default_crop_matches_the_cxr_tower_input_size(processor):
    config = MedBindCXRConfig()
    assert config.model_name == SWIN and processor.crop_size.height == processor.crop_size.width == config.image_size


def test_from_timm_reads_another_models_preprocessing():
    vit = MedBindImageProcessor.from_timm("vit_base_patch16_384")
    assert (vit.crop_size.height, vit.size.shortest_edge, tuple(vit.image_mean)) == (384, 384, (0.5, 0.5, 0.5))
    assert process(vit, gradient()).shape == (1, 3, 384, 384)


def test_unknown_timm_model_is_an_error():
    with pytest.raises(ValueError, match="no pretrained config for model 'not_a_timm_model'"):
        MedBindImageProcessor.from_timm("not_a_timm_model")


def test_output_matches_timms_own_eval_transform(processor):
    rgb = Image.fromarray((np.random.default_rng(0).random((300, 260, 3)) * 255).astype(np.uint8))
    data_config = resolve_data_config(pretrained_cfg=get_pretrained_cfg(SWIN).to_dict())
    expected = create_transform(**data_config)(rgb)
    # torchvision's tensor resize and PIL's differ by at most one 8-bit level after rounding
    torch.testing.assert_close(process(processor, rgb)[0], expected, atol=1.01 / 255 / min(data_config["std"]), rtol=0)


IMAGE_BUILDERS = {
    "pil_L": lambda: Image.fromarray(quantised(gradient(), 255, np.uint8), mode="L"),
    "pil_I;16": lambda: Image.fromarray(quantised(gradient(), 65535, np.uint16)),
    "pil_I": lambda: Image.fromarray(quantised(gradient(), 65535, np.int32), mode="I"),
    "pil_RGB": lambda: Image.fromarray(quantised(np.stack([gradient()] * 3, -1), 255, np.uint8)),
    "pil_RGBA": lambda: Image.fromarray(quantised(np.stack([gradient()] * 3 + [np.ones((60, 80))], -1), 255, np.uint8)),
    "pil_LA": lambda: Image.fromarray(
        quantised(np.stack([gradient(), np.ones((60, 80))], -1), 255, np.uint8), mode="LA"
    ),
    "pil_P": lambda: Image.fromarray(quantised(gradient(), 255, np.uint8), mode="L").convert("P"),
    "numpy_uint8_HW": lambda: quantised(gradient(), 255, np.uint8),
    "numpy_uint16_HW": lambda: quantised(gradient(), 65535, np.uint16),
    "numpy_uint8_HWC": lambda: quantised(np.stack([gradient()] * 3, -1), 255, np.uint8),
    "numpy_float_CHW": lambda: np.stack([gradient()] * 3),
    "torch_uint8_CHW": lambda: torch.from_numpy(quantised(gradient()[None], 255, np.uint8)),
    "torch_float_HW": lambda: torch.from_numpy(gradient()),
}


@pytest.mark.parametrize("name", IMAGE_BUILDERS)
def test_every_accepted_input_gives_the_same_normalised_tensor(processor, name):
    reference = process(processor, IMAGE_BUILDERS["numpy_float_CHW"]())
    pixel_values = process(processor, IMAGE_BUILDERS[name]())
    assert pixel_values.shape == (1, 3, 224, 224) and pixel_values.dtype == torch.float32
    # 8-bit inputs are rounded to 1/255 when stored (bicubic weights amplify that a little) and again after
    # torchvision's fixed-point uint8 resize: at most 1.5 levels apart
    torch.testing.assert_close(pixel_values, reference, atol=1.5 / 255 / min(processor.image_std), rtol=0)


def test_image_file_path_is_opened(processor, tmp_path):
    path = tmp_path / "cxr.png"
    IMAGE_BUILDERS["pil_L"]().save(path)
    torch.testing.assert_close(process(processor, str(path)), process(processor, IMAGE_BUILDERS["pil_L"]()))


def test_16_bit_png_is_scaled_by_its_full_range_not_clipped(processor, tmp_path):
    path = tmp_path / "dicom_derived.png"
    Image.fromarray(quantised(gradient(), 65535, np.uint16)).save(path)
    assert Image.open(path).mode == "I;16"
    recovered = intensities(process(processor, path), processor)
    expected = intensities(process(processor, gradient()), processor)
    torch.testing.assert_close(recovered, expected, atol=1e-4, rtol=0)
    assert recovered.max() > 0.5 and recovered.min() < 0.2  # clipping at 255 would leave an almost uniform white


def test_8_bit_and_16_bit_of_the_same_level_agree(processor):
    eight = np.full((40, 40), 128, dtype=np.uint8)
    sixteen = np.full((40, 40), 128 * 257, dtype=np.uint16)  # 128/255 == 128*257/65535
    torch.testing.assert_close(process(processor, eight), process(processor, sixteen), atol=1e-5, rtol=0)


def test_grayscale_is_replicated_to_three_channels(processor):
    restored = intensities(process(processor, IMAGE_BUILDERS["pil_L"]()), processor)[0]
    torch.testing.assert_close((restored[0], restored[0]), (restored[1], restored[2]), atol=1e-6, rtol=0)


def test_transparent_pixels_are_composited_onto_black(processor):
    rgba = np.zeros((50, 50, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[:, 25:, 3] = 255  # left half transparent
    restored = intensities(process(processor, Image.fromarray(rgba)), processor)[0]
    assert restored[:, :, :90].abs().max() < 1e-5
    opaque = restored[:, :, 140:]
    torch.testing.assert_close(opaque, torch.full_like(opaque, 200 / 255), atol=1e-5, rtol=0)


def test_batch_of_different_sizes_is_stacked(processor):
    batch = [np.zeros((300, 200), np.uint8), np.ones((100, 400, 3), np.float32), Image.new("L", (50, 70))]
    assert process(processor, batch).shape == (3, 3, 224, 224)


@pytest.mark.parametrize(
    ("image", "error", "message"),
    [
        (np.zeros((0, 10), np.uint8), ValueError, "is empty"),
        (np.zeros((10, 10, 5), np.uint8), ValueError, "expected 1 \\(gray\\), 2 \\(gray \\+ alpha\\), 3"),
        (np.full((10, 10), np.nan, np.float32), ValueError, "NaN or infinite"),
        (np.full((10, 10), 2.0, np.float32), ValueError, "float images must lie in \\[0, 1\\]"),
        (np.full((10, 10), -5, np.int32), ValueError, "must lie in \\[0, 65535\\]"),
        (np.zeros((10, 10), bool), ValueError, "boolean"),
    ],
)
def test_unusable_images_are_errors(processor, image, error, message):
    with pytest.raises(error, match=message):
        processor(image)


def test_a_missing_file_is_file_not_found_and_an_undecodable_one_an_error_naming_it(processor, tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.png"):
        processor(tmp_path / "absent.png")
    path = tmp_path / "broken.png"
    path.write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="broken.png"):
        processor(path)


def test_real_radiographs_are_processed(processor, shared_data):
    for path in sorted((shared_data / "cxr").glob("*.*g")):  # the PNGs and the JPEG
        pixel_values = process(processor, path)
        assert pixel_values.shape == (1, 3, 224, 224), path.name
        assert torch.isfinite(pixel_values).all(), path.name
        data_config = resolve_data_config(pretrained_cfg=get_pretrained_cfg(SWIN).to_dict())
        expected = create_transform(**data_config)(Image.open(path).convert("RGB"))
        assert (pixel_values[0] - expected).abs().mean() < 1e-3, path.name
    grayscale = intensities(process(processor, shared_data / "cxr" / "nih_00000001_000.png"), processor)[0]
    torch.testing.assert_close(grayscale[0], grayscale[2], atol=1e-6, rtol=0)


# ---- DICOM --------------------------------------------------------------------------------------------------------


RAMP_12_BIT = np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16)


def test_12_bit_dicom_in_16_bit_words_spans_the_full_range_not_a_sixteenth(processor, tmp_path):
    path = write_dicom(tmp_path / "ramp.dcm", RAMP_12_BIT, bits_stored=12)
    intensities, _ = decode_dicom(path)
    assert intensities.dtype == np.float32
    np.testing.assert_allclose(intensities, RAMP_12_BIT / 4095.0, atol=1e-6)
    # 16-bit precision is kept until normalisation: the processor sees the same floats as given directly.
    torch.testing.assert_close(process(processor, str(path)), process(processor, RAMP_12_BIT / np.float32(4095.0)))


def test_window_center_and_width_set_the_intensity_range(tmp_path):
    path = write_dicom(tmp_path / "window.dcm", RAMP_12_BIT, bits_stored=12, WindowCenter=2048, WindowWidth=1024)
    intensities, _ = decode_dicom(path)
    assert intensities[RAMP_12_BIT <= 1535].max() == 0.0 and intensities[RAMP_12_BIT >= 2560].min() == 1.0
    inside = (RAMP_12_BIT > 1536) & (RAMP_12_BIT < 2559)
    # DICOM's LINEAR window: ((x - (c - 0.5)) / (w - 1) + 0.5), over the output range 0-4095 of 12 bits.
    expected = (RAMP_12_BIT[inside] - 2047.5) / 1023.0 + 0.5
    np.testing.assert_allclose(intensities[inside], expected, atol=1e-6)


def test_rescale_slope_and_intercept_apply_before_the_window(tmp_path):
    stored = np.array([[0, 1000], [1064, 2000]], dtype=np.int16)  # CT-like: HU = stored - 1024
    path = write_dicom(tmp_path / "ct.dcm", stored, bits_stored=12, RescaleSlope=1, RescaleIntercept=-1024,
                       WindowCenter=40, WindowWidth=401)  # fmt: skip
    intensities, _ = decode_dicom(path)
    # HU -1024 lies below the window [-160, 240] and 976 HU above it; -24 and 40 HU fall inside (LINEAR window).
    inside = lambda hounsfield: (hounsfield - 39.5) / 400 + 0.5  # noqa: E731
    np.testing.assert_allclose(intensities, [[0.0, inside(-24)], [inside(40), 1.0]], atol=1e-6)


def test_voi_lut_sequence_maps_through_its_table_scaled_by_the_values_it_uses(tmp_path):
    table = Dataset()
    table.LUTDescriptor = [4096, 0, 16]  # declared 16-bit entries that hold 12-bit values, as vendors write them
    table.add_new("LUTData", "OW", np.minimum(4095, 2 * np.arange(4096)).astype("<u2").tobytes())
    path = write_dicom(tmp_path / "lut.dcm", RAMP_12_BIT, bits_stored=12, VOILUTSequence=[table])
    intensities, _ = decode_dicom(path)
    np.testing.assert_allclose(intensities, np.minimum(4095, 2 * RAMP_12_BIT) / 4095.0, atol=1e-6)


def test_monochrome1_is_inverted_so_that_white_means_dense(tmp_path):
    eight_bit = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    inverted, _ = decode_dicom(write_dicom(tmp_path / "m1.dcm", eight_bit, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(inverted, 255 - eight_bit)
    inverted, _ = decode_dicom(write_dicom(tmp_path / "m1_16.dcm", RAMP_12_BIT, "MONOCHROME1", bits_stored=12))
    np.testing.assert_allclose(inverted, 1.0 - RAMP_12_BIT / 4095.0, atol=1e-6)


def test_8_bit_dicom_keeps_its_exact_stored_values(processor, tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (40, 30), dtype=np.uint8)
    path = write_dicom(tmp_path / "eight.dcm", pixels)
    decoded, dataset = decode_dicom(path)
    assert decoded.dtype == np.uint8 and dataset.Modality == "CR"
    np.testing.assert_array_equal(decoded, pixels)
    torch.testing.assert_close(process(processor, str(path)), process(processor, pixels))


def test_dicom_is_recognised_by_its_marker_whatever_its_name(processor, tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (40, 30), dtype=np.uint8)
    path = write_dicom(tmp_path / "IM0001", pixels)
    assert is_dicom(path)
    torch.testing.assert_close(process(processor, str(path)), process(processor, pixels))


def test_an_undecodable_or_colour_dicom_is_an_error_naming_it(tmp_path):
    corrupt = tmp_path / "corrupt.dcm"
    corrupt.write_bytes(b"\0" * 128 + b"DICM" + b"not a dataset")
    with pytest.raises(ValueError, match="could not decode DICOM file .*corrupt.dcm"):
        decode_dicom(corrupt)
    rgb = write_dicom(tmp_path / "rgb.dcm", np.zeros((4, 4), dtype=np.uint8), photometric="RGB")
    with pytest.raises(ValueError, match="rgb.dcm is not a single-frame grayscale radiograph"):
        decode_dicom(rgb)


def test_without_pydicom_a_dicom_asks_for_it_and_other_images_still_work(processor, tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "a.dcm", np.zeros((4, 4), dtype=np.uint8))
    monkeypatch.setitem(sys.modules, "pydicom", None)  # `import pydicom` now raises ImportError
    with pytest.raises(ImportError, match=r"a\.dcm needs pydicom: pip install pydicom"):
        processor(str(path))
    assert process(processor, gradient()).shape == (1, 3, 224, 224)


def test_remote_code_does_not_require_pydicom():
    # transformers refuses a Hub folder whose code imports a missing package at module level; DICOM is optional.
    assert "pydicom" not in get_imports(image_processing_medbind.__file__)


def test_rsna_sample_decodes_through_auto_processor_to_the_pixels_the_rsna_builder_stores(shared_data, tmp_path):
    dicom = shared_data / "cxr" / "rsna_example.dcm"
    images = tmp_path / "rsna" / "stage_2_train_images"
    images.mkdir(parents=True)
    (images / "patient0.dcm").symlink_to(dicom)
    (tmp_path / "rsna" / "stage_2_train_labels.csv").write_text("patientId,x,y,width,height,Target\npatient0,,,,,0\n")
    (row,) = [row for split in build_rsna(tmp_path / "rsna", shortest_edge=0).values() for row in split]
    tokenizer = train_wordpiece_tokenizer(["No evidence of pneumonia."], vocab_size=50)
    MedBindProcessor.from_config(MedBindConfig(), tokenizer).save_pretrained(tmp_path / "processor")
    auto = AutoProcessor.from_pretrained(tmp_path / "processor")
    np.testing.assert_array_equal(np.asarray(auto.image_processor.fetch_images(str(dicom))), np.asarray(row["image"]))
    from_dicom, from_row = (auto(images=image, return_tensors="pt") for image in (str(dicom), row["image"]))
    torch.testing.assert_close(from_dicom["pixel_values"], from_row["pixel_values"], rtol=0, atol=0)


def test_medclip_preprocessing_resizes_to_256_centre_crops_224_and_normalises_with_medclips_statistics():
    processor = MedBindImageProcessor.from_medclip()
    # Rows 0..255 of a 256 x 256 gradient: the resize keeps it, the centre crop keeps rows 16..239.
    image = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 256, axis=1)
    pixels = processor(images=image, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 224, 224)
    # (v / 255 - 0.5862785803043838) / 0.27950088968644304, worked out by hand for v = 16, 100, 239, on each channel.
    for row, expected in ((0, -1.8731013), (84, -0.6945299), (223, 1.2557252)):
        torch.testing.assert_close(pixels[0, :, row, 100], torch.full((3,), expected), atol=1e-5, rtol=0)
    uncropped = processor(images=image, do_center_crop=False, return_tensors="pt")["pixel_values"]
    assert uncropped.shape == (1, 3, 256, 256)  # what training's random crop takes


def test_cxr_config_names_its_preprocessing_and_the_paper_preset_takes_medclips():
    paper, tiny = MedBindConfig.from_preset("paper").cxr_config, MedBindConfig.from_preset("tiny").cxr_config
    assert (paper.preprocessing, tiny.preprocessing, MedBindCXRConfig().preprocessing) == ("medclip", "timm", "timm")
    medclip = MedBindImageProcessor.from_cxr_config(paper)
    assert list(medclip.image_mean) == [0.5862785803043838] * 3 and list(medclip.image_std) == [0.27950088968644304] * 3
    assert (medclip.size.height, medclip.size.width, medclip.crop_size.height) == (256, 256, 224)
    timm = MedBindImageProcessor.from_cxr_config(tiny)  # the demo's: timm's eval transform, as before
    assert timm.to_dict() == MedBindImageProcessor.from_timm(tiny.model_name, tiny.image_size).to_dict()
    tokenizer = train_wordpiece_tokenizer(["a radiograph"] * 4, vocab_size=40)
    processor = MedBindProcessor.from_config(MedBindConfig.from_preset("paper"), tokenizer)
    assert processor.image_processor.to_dict() == medclip.to_dict()
    with pytest.raises(ValueError, match="preprocessing must be one of"):
        MedBindCXRConfig(preprocessing="imagenet")


def test_medclip_preprocessing_pads_a_wide_radiograph_to_a_square_on_black_before_resizing():
    processor = MedBindImageProcessor.from_medclip()
    white = np.full((128, 256), 255, dtype=np.uint8)  # half as tall as wide
    pixels = processor(images=white, return_tensors="pt")["pixel_values"][0]
    # Padded to 256 x 256 with 64 black rows above and below (the resize keeps it), cropped to rows 16..239: rows
    # 0-47 black, 48-175 white, 176-223 black. Black (0 - 0.58628) / 0.27950 = -2.09759, white (1 - ...) = 1.48022.
    for row, expected in ((0, -2.0975911), (47, -2.0975911), (48, 1.4802150), (175, 1.4802150), (176, -2.0975911)):
        torch.testing.assert_close(pixels[:, row, 112], torch.full((3,), expected), atol=1e-5, rtol=0)
    assert not MedBindImageProcessor().pad_to_square  # timm's preprocessing does not pad


def test_medclip_settings_survive_save_and_load(tmp_path):
    MedBindImageProcessor.from_medclip().save_pretrained(tmp_path)
    loaded = MedBindImageProcessor.from_pretrained(tmp_path)
    assert loaded.pad_to_square and (loaded.size.height, loaded.size.width) == (256, 256)
    assert list(loaded.image_mean) == [0.5862785803043838] * 3
