"""Radiographs stored at build time: shrunk so that a loader worker keeps up with the GPU, losslessly, bit depth kept
(every CXR builder's `image` column)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

# A full-size radiograph takes ~30-130 ms to decode on one core; at 512 pixels on the shorter side ~0.4-4 ms
# (`_encoded`), and the image processor's own resize works on 25x fewer pixels. 512 keeps 2x headroom above the
# 224-256 pixel inputs of the CXR tower.
DEFAULT_SHORTEST_EDGE = 512
# Modes stored as they are: 8-bit grey and colour (with alpha) and 16-bit grey.
_STORED_MODES = ("L", "LA", "RGB", "RGBA", "I;16")
# Modes turned into one of those before resizing: bilevel to grey, palettes and other colour spaces to RGB.
_CONVERTED_MODES = {"1": "L", "P": "RGB", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}
# Integer modes holding 16-bit data in another layout (32-bit "I" from TIFF or DICOM, byte-order variants).
_SIXTEEN_BIT_MODES = ("I", "I;16B", "I;16L", "I;16N")


def shrunk_size(size: tuple[int, int], shortest_edge: int) -> tuple[int, int] | None:
    """`(width, height)` shrunk so that the shorter side is `shortest_edge`, aspect ratio kept (the longer side
    rounded); None when the shorter side is already at most `shortest_edge` (images are never enlarged)."""
    width, height = size
    if min(width, height) <= shortest_edge:
        return None
    if width <= height:
        return shortest_edge, max(1, round(height * shortest_edge / width))
    return max(1, round(width * shortest_edge / height)), shortest_edge


def _storable(image: Image.Image, origin: str) -> Image.Image:
    """`image` in one of `_STORED_MODES`, its bit depth kept (16-bit stays 16-bit)."""
    if image.mode in _STORED_MODES:
        return image
    if image.mode in _CONVERTED_MODES:
        return image.convert(_CONVERTED_MODES[image.mode])
    if image.mode in _SIXTEEN_BIT_MODES:
        low, high = image.getextrema()
        if 0 <= low and high <= 65535:
            return Image.fromarray(np.asarray(image).astype(np.uint16))
        raise ValueError(f"{origin}: integer image with values {low}..{high}, expected 16-bit values 0..65535")
    raise ValueError(
        f"{origin}: image mode {image.mode!r} is not a radiograph's (expected 8-bit grey or colour, or 16-bit grey)"
    )


def _encoded(image: Image.Image) -> bytes:
    # Chosen for decode speed of a 512 x 614 radiograph on one core (Pillow 13): 8-bit PNG ~4 ms (uncompressed TIFF
    # would be 0.4 ms but 2-5x the disk); 16-bit PNG ~11 ms, too slow for 100 images/s, uncompressed 16-bit TIFF
    # ~0.4 ms for 1.45x the PNG's bytes. Both are lossless and read back in the mode written (`L`, `RGB`, `I;16`).
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF" if image.mode == "I;16" else "PNG")
    return buffer.getvalue()


def stored_radiograph(
    image: str | Path | Image.Image, shortest_edge: int | None = DEFAULT_SHORTEST_EDGE
) -> str | dict[str, bytes | None]:
    """The value a CXR builder stores in its `image` column (`datasets.Image`), shrunk at build time.

    With `shortest_edge` (default 512), the dataset holds the images itself, so the raw download is no longer needed
    and a loader decodes small files: an image larger than that is shrunk so that its shorter side is
    `shortest_edge` (Lanczos, antialiased; a JPEG is first decoded at a reduced DCT scale of at least twice the
    target, as Pillow's `thumbnail` does) and stored losslessly with its bit depth: 8-bit grey or colour as PNG,
    16-bit grey (`I;16`) as uncompressed TIFF, the encodings that decode fastest for their size (`_encoded`; a real
    radiograph takes ~100-150 KB as a 512-pixel PNG, so MIMIC-CXR-JPG's ~124k studies take ~12-19 GB). An image
    already no larger is stored as its original file's bytes, unchanged. With `shortest_edge` 0 or None a file is
    stored as its path (decoded lazily from the download, which must stay where it is) and a decoded image as above,
    at full size. `image` is the radiograph's file (any format Pillow reads) or an image already decoded (a DICOM's
    pixels).

    Returns:
        A path string, or `{"bytes": ..., "path": None}` (the original file in `image_path` says where it came from).

    Raises:
        ValueError: naming the file, if it is not an image or its mode is not a radiograph's (`_storable`).
    """
    if isinstance(image, Image.Image):
        target = shrunk_size(image.size, shortest_edge) if shortest_edge else None
        image = _storable(image, f"decoded image (mode {image.mode}, size {image.size})")
        return {"bytes": _encoded(image.resize(target, Image.Resampling.LANCZOS) if target else image), "path": None}
    path = Path(image)
    if not shortest_edge:
        return str(path)
    try:
        opened = Image.open(path)
    except UnidentifiedImageError as error:
        raise ValueError(f"{path}: not an image file Pillow can read ({error})") from None
    with opened:
        target = shrunk_size(opened.size, shortest_edge)
        if target is None:
            return {"bytes": path.read_bytes(), "path": None}
        opened.draft(opened.mode, (2 * target[0], 2 * target[1]))  # JPEG only; a no-op for other formats
        shrunk = _storable(opened, str(path)).resize(target, Image.Resampling.LANCZOS)
    return {"bytes": _encoded(shrunk), "path": None}


def radiograph_example(record: Mapping[str, Any], shortest_edge: int | None) -> dict[str, Any]:
    """A CXR record with its `image` made from its `image_path` by `stored_radiograph`: the CXR builders'
    `make_example` (with `functools.partial`), so that the images are decoded and shrunk in the worker processes."""
    return {**record, "image": stored_radiograph(record["image_path"], shortest_edge)}
