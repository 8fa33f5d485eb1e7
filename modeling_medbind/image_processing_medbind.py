"""Chest X-ray image processor for MedBind: radiographs (PNG, JPEG, DICOM, arrays) in, `pixel_values` out."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from timm.data import resolve_data_config
from timm.models import get_pretrained_cfg
from transformers.image_processing_backends import TorchvisionBackend
from transformers.image_utils import (
    ChannelDimension,
    ImageInput,
    PILImageResampling,
    SizeDict,
    infer_channel_dimension_format,
    make_flat_list_of_images,
)

from .configuration_medbind import PAPER_CXR_MODEL_NAME, MedBindCXRConfig

# Pillow modes read as they are; any other mode (palette, bilevel, CMYK, YCbCr...) is converted to RGB(A) first.
PIL_MODES_READ_DIRECTLY = {"L", "LA", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
UINT8_MAX = 255.0
UINT16_MAX = 65535.0
# A DICOM Part 10 file holds "DICM" after its 128-byte preamble, whatever its name; older ones only have the suffix.
DICOM_MAGIC = (128, b"DICM")
DICOM_SUFFIXES = (".dcm", ".dicom")
# MedCLIP's preprocessing (the paper's citation for its CXR pipeline): one mean / std for the gray intensities,
# computed by MedCLIP on its training radiographs, and a 256 x 256 resize from which a 224 crop is taken.
MEDCLIP_MEAN = 0.5862785803043838
MEDCLIP_STD = 0.27950088968644304
MEDCLIP_RESIZE, MEDCLIP_CROP = 256, 224


def timm_preprocessing_defaults(
    model_name: str = PAPER_CXR_MODEL_NAME, image_size: int | None = None
) -> dict[str, Any]:
    """Image-processor settings equal to timm's evaluation preprocessing for a pretrained model.

    timm's eval transform resizes the shortest edge to `floor(input_size / crop_pct)` with the model's
    interpolation, centre-crops `input_size`, and normalises with the model's mean/std; this returns the same
    settings as `MedBindImageProcessor` keyword arguments, read from timm's `pretrained_cfg` (no download).
    `image_size` (default: timm's input size) replaces the crop's side, the resize keeping timm's crop ratio.

    Raises:
        ValueError: timm knows no pretrained config for `model_name`, or it uses a crop mode other than `"center"`.
    """
    pretrained_cfg = get_pretrained_cfg(model_name)
    if pretrained_cfg is None:
        raise ValueError(f"timm has no pretrained config for model {model_name!r}")
    data_config = resolve_data_config(pretrained_cfg=pretrained_cfg.to_dict())
    if data_config.get("crop_mode", "center") != "center":
        raise ValueError(
            f"timm model {model_name!r} uses crop_mode={data_config['crop_mode']!r}; only 'center' is supported"
        )
    _, height, width = (None, image_size, image_size) if image_size else data_config["input_size"]
    return {
        "size": {"shortest_edge": math.floor(min(height, width) / data_config["crop_pct"])},
        "crop_size": {"height": height, "width": width},
        "resample": PILImageResampling[data_config["interpolation"].upper()],
        "image_mean": list(data_config["mean"]),
        "image_std": list(data_config["std"]),
    }


def medclip_preprocessing_defaults(image_size: int = MEDCLIP_CROP) -> dict[str, Any]:
    """Image-processor settings of MedCLIP's preprocessing: pad to a square on black (centred, as MedCLIP's dataset
    does, so the resize does not stretch the radiograph), resize to a square of `MEDCLIP_RESIZE` (bilinear, as
    torchvision's `Resize((256, 256))`), centre-crop `image_size`, one mean / std on every channel (grayscale
    radiographs are replicated, so each channel holds the gray value MedCLIP normalises). Another `image_size` than
    MedCLIP's 224 keeps its 256 / 224 resize ratio.
    """
    resize = round(image_size * MEDCLIP_RESIZE / MEDCLIP_CROP)
    return {
        "pad_to_square": True,
        "size": {"height": resize, "width": resize},
        "crop_size": {"height": image_size, "width": image_size},
        "resample": PILImageResampling.BILINEAR,
        "image_mean": [MEDCLIP_MEAN] * 3,
        "image_std": [MEDCLIP_STD] * 3,
    }


_DEFAULTS = timm_preprocessing_defaults(PAPER_CXR_MODEL_NAME)


class MedBindImageProcessor(TorchvisionBackend):
    r"""Chest X-ray processor: any radiograph in, `pixel_values [B, 3, 224, 224]` normalised for the CXR tower out.

    Defaults are timm's evaluation preprocessing of `swin_tiny_patch4_window7_224` (resize shortest edge to 248
    bicubic, centre-crop 224, ImageNet mean/std); [`MedBindImageProcessor.from_timm`] gives another model's,
    [`MedBindImageProcessor.from_medclip`] MedCLIP's (the `paper` preset's), and
    [`MedBindImageProcessor.from_cxr_config`] the one a model's `cxr_config.preprocessing` asks for.

    Accepted inputs (one or a list): PIL images, numpy arrays and torch tensors (`[H, W]`, `[C, H, W]` or
    `[H, W, C]`), and image file paths: anything Pillow opens (PNG, JPEG...) and DICOM (see [`decode_dicom`];
    needs `pydicom`). Pixel intensities are read by their storage type:
    - 8-bit (`uint8`, PIL `L`/`RGB`...): 0-255.
    - 16-bit (PIL `I;16`, `uint16`, and any other integer array such as PIL `I`'s `int32`): 0-65535, scaled by
      that full range (not clipped to 255), so a DICOM-derived PNG keeps its precision through resizing.
    - floating point: 0-1.
    Channels: grayscale is replicated to the 3 channels the ImageNet-pretrained tower expects; an alpha channel
    (`LA`, `RGBA`) is composited onto black, because black is the radiograph's background (no attenuation) and a
    white background would read as dense tissue.

    Raises `ValueError` for empty images, more than 4 channels, NaN/inf or out-of-range values, negative integers
    and boolean arrays, and `FileNotFoundError` for a missing file.
    """

    resample = _DEFAULTS["resample"]
    image_mean = _DEFAULTS["image_mean"]
    image_std = _DEFAULTS["image_std"]
    size = _DEFAULTS["size"]
    crop_size = _DEFAULTS["crop_size"]
    default_to_square = False
    do_resize = True
    do_center_crop = True
    do_rescale = True
    rescale_factor = 1 / UINT8_MAX
    do_normalize = True
    pad_to_square = False  # MedCLIP's preprocessing pads a radiograph to a square before resizing it
    model_input_names = ["pixel_values"]

    @classmethod
    def from_timm(cls, model_name: str, image_size: int | None = None, **kwargs) -> MedBindImageProcessor:
        """An image processor with timm's evaluation preprocessing for `model_name` (see `timm_preprocessing_defaults`);
        `**kwargs` override any setting."""
        return cls(**{**timm_preprocessing_defaults(model_name, image_size), **kwargs})

    @classmethod
    def from_medclip(cls, image_size: int = MEDCLIP_CROP, **kwargs) -> MedBindImageProcessor:
        """An image processor with MedCLIP's preprocessing (see `medclip_preprocessing_defaults`); `**kwargs`
        override any setting."""
        return cls(**{**medclip_preprocessing_defaults(image_size), **kwargs})

    @classmethod
    def from_cxr_config(cls, cxr_config: MedBindCXRConfig, **kwargs) -> MedBindImageProcessor:
        """The image processor a CXR tower takes: its `preprocessing` (`"timm"`: `from_timm` of its `model_name`;
        `"medclip"`: `from_medclip`) at its `image_size`; `**kwargs` override any setting."""
        if cxr_config.preprocessing == "medclip":
            return cls.from_medclip(cxr_config.image_size, **kwargs)
        return cls.from_timm(cxr_config.model_name, cxr_config.image_size, **kwargs)

    def fetch_images(self, images: ImageInput | str | os.PathLike) -> ImageInput:
        """Replace the image file paths in (nested lists of) images by the decoded images: DICOM with
        [`decode_dicom`] (its `[H, W]` array), others with Pillow (so 16-bit PNGs keep their depth)."""
        if isinstance(images, (list, tuple)):
            return [self.fetch_images(image) for image in images]
        if isinstance(images, (str, os.PathLike)):
            return _open_image(Path(images))
        return images

    def _prepare_images_structure(self, images: ImageInput, expected_ndims: int = 3) -> list:
        """Flatten the input into a list of images, treating 2-D arrays/tensors as single grayscale images."""
        images = self.fetch_images(images)
        # transformers' flattening only knows [C, H, W] arrays, but 16-bit radiographs usually arrive as [H, W].
        if isinstance(images, (list, tuple)):
            images = [image[None] if _is_2d_array(image) else image for image in images]
        elif _is_2d_array(images):
            images = images[None]
        return make_flat_list_of_images(images, expected_ndims=expected_ndims)

    def process_image(
        self,
        image: ImageInput,
        input_data_format: str | ChannelDimension | None = None,
        device: torch.device | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """One raw image -> a `[3, H, W]` tensor on the 8-bit scale (`uint8`, or `float32` in [0, 255]).

        Keeping 8-bit inputs as `uint8` keeps torchvision's fast integer resize; everything else becomes float32
        on the same 0-255 scale, so the usual `rescale_factor = 1/255` applies to every input. Grayscale comes
        back as one plane viewed as 3 channels (see `resize`). Layouts, ranges and errors: see the class docstring.
        """
        description = _describe(image)
        pixels, full_scale = _to_tensor(image, description)
        if pixels.ndim == 2:
            pixels = pixels[None]
        elif pixels.ndim != 3:
            raise ValueError(f"{description} must be [H, W], [C, H, W] or [H, W, C], got shape {tuple(pixels.shape)}")
        else:
            if input_data_format is None:
                try:
                    input_data_format = infer_channel_dimension_format(pixels, num_channels=(1, 2, 3, 4))
                except ValueError as error:
                    raise ValueError(
                        f"{description} has shape {tuple(pixels.shape)}; expected 1 (gray), 2 (gray + alpha), "
                        "3 (RGB) or 4 (RGBA) channels"
                    ) from error
            if ChannelDimension(input_data_format) == ChannelDimension.LAST:
                pixels = pixels.permute(2, 0, 1)
        pixels = _to_rgb_on_8bit_scale(pixels, full_scale, description)
        if self.pad_to_square:
            pixels = _pad_to_square(pixels)
        return pixels if device is None else pixels.to(device)

    def resize(self, image: torch.Tensor, size: SizeDict, **kwargs) -> torch.Tensor:
        """Resize `[..., 3, H, W]` as the torchvision backend does, but a grayscale image (one plane viewed as 3
        channels, channel stride 0) only once, returned as such a view again."""
        # Radiographs are gray: resizing the shared plane once is 3x less work than resizing three copies.
        if image.stride(-3) == 0:
            plane = super().resize(image[..., :1, :, :], size, **kwargs)
            return plane.expand(*plane.shape[:-3], image.shape[-3], *plane.shape[-2:])
        return super().resize(image, size, **kwargs)


def _pad_to_square(pixels: torch.Tensor) -> torch.Tensor:
    """`[3, H, W]` centred on a black `[3, S, S]`, `S = max(H, W)` (black: a radiograph's empty background);
    a grayscale view stays one padded plane viewed as 3 channels."""
    height, width = pixels.shape[-2:]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    padding = (left, side - width - left, top, side - height - top)
    if pixels.stride(0) == 0:
        return F.pad(pixels[:1], padding).expand(3, -1, -1)
    return F.pad(pixels, padding)


def _is_2d_array(image: Any) -> bool:
    return isinstance(image, (np.ndarray, torch.Tensor)) and image.ndim == 2


def _open_image(path: Path) -> Image.Image | np.ndarray:
    """Decode an image file fully (so the file is closed), naming it in any error."""
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    if is_dicom(path):
        return decode_dicom(path)[0]
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"could not decode image file {path}: {error}") from error
    return image


def is_dicom(path: str | os.PathLike) -> bool:
    """Whether `path` names a DICOM file: a `.dcm` / `.dicom` suffix, or the Part 10 "DICM" marker."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    offset, magic = DICOM_MAGIC
    with path.open("rb") as file:
        file.seek(offset)
        return file.read(len(magic)) == magic


def decode_dicom(path: str | os.PathLike) -> tuple[np.ndarray, Any]:
    """Decode a single-frame grayscale radiograph DICOM to display intensities, white meaning dense.

    The stored values go through the Modality LUT (Rescale Slope / Intercept, or a Modality LUT Sequence), then the
    VOI LUT (a VOI LUT Sequence, else the first Window Center / Width), as DICOM PS3.3 C.11 orders them, with
    pydicom's implementations. The result is scaled to [0, 1] by the output range of the last step that applied:
    the window (or VOI LUT) range, else the stored range `BitsStored` gives, through the rescale. A 12-bit image
    stored in 16-bit words therefore spans [0, 1], not [0, 1/16]. MONOCHROME1 (white meaning empty) is inverted.

    pydicom is not among the packages a Hub folder's code may import at its top, so it is imported here.

    Returns:
        `(pixels, dataset)`: `pixels [H, W]` are `uint8` exactly as stored for 8-bit images that no LUT changes
        (as RSNA's), else `float32` in [0, 1], keeping 16-bit precision until normalisation;
        `dataset` is the `pydicom.Dataset` (for tags such as `ViewPosition`).

    Raises:
        ValueError: naming the file, if it cannot be decoded or is not a single-frame grayscale image.
    """
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi, apply_voi_lut
    except ImportError as error:
        raise ImportError(f"reading the DICOM file {path} needs pydicom: pip install pydicom") from error
    try:
        dataset = pydicom.dcmread(path)
        stored = dataset.pixel_array
    # pydicom reports a corrupt file, missing pixel data or a compression without its decoder in many error types.
    except Exception as error:
        raise ValueError(f"could not decode DICOM file {path}: {type(error).__name__}: {error}") from error
    photometric = dataset.get("PhotometricInterpretation")
    if stored.ndim != 2 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(
            f"DICOM file {path} is not a single-frame grayscale radiograph (pixel array {stored.shape}, "
            f"PhotometricInterpretation {photometric})"
        )
    values = apply_voi_lut(apply_modality_lut(stored, dataset), dataset)
    if values is stored and stored.dtype == np.uint8:
        return (255 - stored if photometric == "MONOCHROME1" else stored), dataset
    low, high = _dicom_output_range(dataset, apply_voi)
    intensities = np.clip((values.astype(np.float32) - low) / (high - low), 0.0, 1.0)
    return (1.0 - intensities if photometric == "MONOCHROME1" else intensities), dataset


def _dicom_output_range(dataset: Any, apply_voi: Callable) -> tuple[float, float]:
    """The `(low, high)` values the LUTs of `decode_dicom` can output, as pydicom applies them; ValueError when the
    range is empty (a constant VOI LUT, or a zero Rescale Slope)."""
    voi_lut = dataset.get("VOILUTSequence")
    if voi_lut and voi_lut[0].get("LUTDescriptor") is not None and voi_lut[0].get("LUTData") is not None:
        # The table's own values over its input domain: declared entry depths (16 bits) often exceed those used.
        entries, first_mapped, _ = voi_lut[0].LUTDescriptor
        table = apply_voi(np.arange(first_mapped, first_mapped + (entries or 2**16)), dataset)
        low, high = float(table.min()), float(table.max())
    elif dataset.get("ModalityLUTSequence"):
        low, high = 0.0, 2.0 ** dataset.ModalityLUTSequence[0].LUTDescriptor[2] - 1
    else:
        # The stored range through the rescale; a window maps into this same range (pydicom's apply_windowing).
        bits = int(dataset.BitsStored)
        signed = dataset.PixelRepresentation == 1
        low, high = (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1) if signed else (0.0, 2.0**bits - 1)
        slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
        if slope is not None and intercept is not None:
            low, high = sorted((low * float(slope) + float(intercept), high * float(slope) + float(intercept)))
    if not high > low:
        raise ValueError(f"DICOM file {dataset.filename}: its LUTs map every pixel to {low}")
    return low, high


def _describe(image: Any) -> str:
    """How an image is named in error messages: its file when known, else its type, mode or dtype and shape."""
    if isinstance(image, Image.Image):
        filename = getattr(image, "filename", "")
        return f"image file {filename}" if filename else f"PIL image (mode {image.mode}, size {image.size})"
    if isinstance(image, (np.ndarray, torch.Tensor)):
        return f"image {type(image).__name__} (dtype {image.dtype}, shape {tuple(image.shape)})"
    return f"image of type {type(image).__name__}"


def _to_tensor(image: Any, description: str) -> tuple[torch.Tensor, float]:
    """Any accepted input -> (a CPU tensor of its stored values, layout untouched; the value of full intensity).

    Full intensity is 255 for uint8, 65535 for other integers (16-bit), 1.0 for floats.
    """
    if isinstance(image, Image.Image):
        if image.mode not in PIL_MODES_READ_DIRECTLY:
            image = image.convert("RGBA" if image.has_transparency_data else "RGB")
        image = np.asarray(image)
    if not isinstance(image, (np.ndarray, torch.Tensor)):
        raise ValueError(f"{description}: expected a PIL image, numpy array, tensor or file path")
    if math.prod(image.shape) == 0:
        raise ValueError(f"{description} is empty (shape {tuple(image.shape)})")
    if isinstance(image, np.ndarray):
        # torch has no big-endian dtypes (PIL's I;16B, some DICOM exports).
        if image.dtype.byteorder == ">":
            image = image.astype(image.dtype.newbyteorder("="))
        if image.dtype == np.uint16:
            # torch's uint16 lacks most arithmetic; one float copy here is the only pass over a 16-bit image
            return torch.from_numpy(image.astype(np.float32)), UINT16_MAX
        # torch wraps only writable, C-ordered buffers (Pillow's is read-only): copy only when needed
        image = torch.from_numpy(np.require(image, requirements=["C_CONTIGUOUS", "WRITEABLE"]))
    pixels = image.detach().cpu()
    if pixels.dtype == torch.bool or pixels.is_complex():
        raise ValueError(f"{description}: boolean or complex pixels are not an intensity image")
    if pixels.dtype == torch.uint8:
        return pixels, UINT8_MAX
    if not pixels.is_floating_point():
        low, high = pixels.min().item(), pixels.max().item()
        if low < 0 or high > UINT16_MAX:
            raise ValueError(
                f"{description} holds integers in [{low}, {high}]; integer images other than uint8 are read as "
                f"16-bit and must lie in [0, {int(UINT16_MAX)}]"
            )
        return pixels, UINT16_MAX
    if not torch.isfinite(pixels).all():
        raise ValueError(f"{description} contains NaN or infinite values")
    low, high = pixels.min().item(), pixels.max().item()
    if low < 0.0 or high > 1.0:
        raise ValueError(f"{description} holds floats in [{low:.4g}, {high:.4g}]; float images must lie in [0, 1]")
    return pixels, 1.0


def _to_rgb_on_8bit_scale(pixels: torch.Tensor, full_scale: float, description: str) -> torch.Tensor:
    """`[C, H, W]` with C in 1-4 -> `[3, H, W]`: uint8 for opaque 8-bit input, float32 in [0, 255] otherwise.

    Grayscale becomes a stride-0 view of one plane, which `MedBindImageProcessor.resize` resizes once.
    """
    num_channels = pixels.shape[0]
    if num_channels not in (1, 2, 3, 4):
        raise ValueError(f"{description} has {num_channels} channels; expected 1, 2 (with alpha), 3 or 4 (with alpha)")
    if pixels.dtype != torch.uint8 or num_channels in (2, 4):
        pixels = pixels.to(torch.float32) * (UINT8_MAX / full_scale)
        if num_channels in (2, 4):
            pixels = pixels[:-1] * (pixels[-1:] / UINT8_MAX)
    return pixels.expand(3, -1, -1) if pixels.shape[0] == 1 else pixels
