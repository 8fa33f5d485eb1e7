"""Tests of processing/medbind_processing/radiographs.py: radiographs shrunk at build time, bit depth kept."""

import io

import numpy as np
import pytest
from PIL import Image

from medbind_processing.radiographs import shrunk_size, stored_radiograph


def test_shrunk_size_sets_the_shorter_side_and_never_enlarges():
    assert shrunk_size((3000, 2500), 512) == (614, 512)
    assert shrunk_size((2500, 3000), 512) == (512, 614)
    assert shrunk_size((512, 900), 512) is None and shrunk_size((300, 299), 512) is None


def _decoded(stored: dict) -> Image.Image:
    assert stored["path"] is None
    image = Image.open(io.BytesIO(stored["bytes"]))
    image.load()
    return image


def test_a_sixteen_bit_radiograph_is_shrunk_and_stays_sixteen_bit(tmp_path):
    pixels = np.linspace(1_000, 64_000, 60 * 80).reshape(60, 80).astype(np.uint16)
    path = tmp_path / "dicom_export.png"
    Image.fromarray(pixels).save(path)
    image = _decoded(stored_radiograph(path, 30))
    assert (image.format, image.mode, image.size) == ("TIFF", "I;16", (40, 30))  # uncompressed: fastest to decode
    exact = np.asarray(Image.fromarray(pixels.astype(np.float32)).resize((40, 30), Image.Resampling.LANCZOS))
    np.testing.assert_allclose(np.asarray(image), exact, atol=1.5)  # 16-bit steps, not 8-bit ones (257 apart)


def test_a_jpeg_is_shrunk_from_a_reduced_decode_like_a_full_one(tmp_path):
    rows, columns = np.mgrid[0:300, 0:400]
    path = tmp_path / "radiograph.jpg"
    Image.fromarray((100 + 80 * np.sin(rows / 40) * np.cos(columns / 50)).astype(np.uint8)).save(path, quality=95)
    image = _decoded(stored_radiograph(path, 50))
    assert (image.format, image.mode, image.size) == ("PNG", "L", (67, 50))
    full = np.asarray(Image.open(path).resize((67, 50), Image.Resampling.LANCZOS), dtype=float)
    assert np.abs(np.asarray(image, dtype=float) - full).mean() < 1.0


def test_an_image_no_larger_than_the_target_is_stored_as_its_own_file(tmp_path):
    path = tmp_path / "small.jpg"
    Image.fromarray(np.full((30, 40), 90, np.uint8)).save(path)
    assert stored_radiograph(path, 30) == {"bytes": path.read_bytes(), "path": None}


def test_shortest_edge_zero_keeps_the_path_and_a_decoded_image_is_stored_whole(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.full((30, 40), 90, np.uint8)).save(path)
    assert stored_radiograph(path, 0) == stored_radiograph(path, None) == str(path)
    decoded = np.arange(1200, dtype=np.uint8).reshape(30, 40)
    np.testing.assert_array_equal(np.asarray(_decoded(stored_radiograph(Image.fromarray(decoded), 0))), decoded)
    palette = Image.fromarray(decoded).convert("P")
    assert _decoded(stored_radiograph(palette, 10)).mode == "RGB"


def test_unreadable_files_and_foreign_modes_are_errors_naming_them(tmp_path):
    (tmp_path / "report.png").write_text("not an image")
    with pytest.raises(ValueError, match="report.png: not an image file"):
        stored_radiograph(tmp_path / "report.png", 512)
    with pytest.raises(ValueError, match="image mode 'F'"):
        stored_radiograph(Image.fromarray(np.zeros((4, 4), np.float32)), 512)
    with pytest.raises(ValueError, match=r"values 0\.\.70000"):
        stored_radiograph(Image.fromarray(np.array([[0, 70_000]], np.int32)), 512)
    assert _decoded(stored_radiograph(Image.fromarray(np.array([[0, 60_000]], np.int32)), 512)).mode == "I;16"
