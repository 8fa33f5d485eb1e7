"""Chest X-ray image processor for MedBind, and the MedCLIP-style train-time augmentation."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
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

DEFAULT_TIMM_MODEL = "swin_tiny_patch4_window7_224"
# Pillow modes read as they are; any other mode (palette, bilevel, CMYK, YCbCr...) is converted to RGB(A) first.
PIL_MODES_READ_DIRECTLY = {"L", "LA", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
UINT8_MAX = 255.0
UINT16_MAX = 65535.0


def timm_preprocessing_defaults(model_name: str = DEFAULT_TIMM_MODEL) -> dict[str, Any]:
    """Image-processor settings equal to timm's evaluation preprocessing for a pretrained model.

    timm's eval transform resizes the shortest edge to `floor(input_size / crop_pct)` with the model's
    interpolation, centre-crops `input_size`, and normalises with the model's mean/std; this returns the same
    settings as `MedBindImageProcessor` keyword arguments, read from timm's `pretrained_cfg` (no download).

    Args:
        model_name: a timm model name (`timm.list_models(pretrained=True)`), e.g. `"swin_tiny_patch4_window7_224"`.

    Returns:
        `{"size", "crop_size", "resample", "image_mean", "image_std"}`.

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
    _, height, width = data_config["input_size"]
    return {
        "size": {"shortest_edge": math.floor(min(height, width) / data_config["crop_pct"])},
        "crop_size": {"height": height, "width": width},
        "resample": PILImageResampling[data_config["interpolation"].upper()],
        "image_mean": list(data_config["mean"]),
        "image_std": list(data_config["std"]),
    }


_DEFAULTS = timm_preprocessing_defaults(DEFAULT_TIMM_MODEL)


class MedBindImageProcessor(TorchvisionBackend):
    r"""
    Chest X-ray processor: any radiograph in, `pixel_values [B, 3, 224, 224]` normalised for the CXR tower out.

    Defaults are timm's evaluation preprocessing of `swin_tiny_patch4_window7_224` (resize shortest edge to 248
    bicubic, centre-crop 224, ImageNet mean/std); [`MedBindImageProcessor.from_timm`] gives another model's.

    Accepted inputs (one or a list): PIL images, numpy arrays and torch tensors (`[H, W]`, `[C, H, W]` or
    `[H, W, C]`), and image file paths. Pixel intensities are read by their storage type:
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
    model_input_names = ["pixel_values"]

    @classmethod
    def from_timm(cls, model_name: str, **kwargs) -> MedBindImageProcessor:
        """An image processor with timm's evaluation preprocessing for `model_name` (see `timm_preprocessing_defaults`).

        Args:
            model_name: a timm model name with a pretrained config.
            **kwargs: overrides of any processor setting.

        Returns:
            The processor.

        Raises:
            ValueError: as `timm_preprocessing_defaults`.
        """
        return cls(**{**timm_preprocessing_defaults(model_name), **kwargs})

    def fetch_images(self, images: ImageInput | str | os.PathLike) -> ImageInput:
        """Open image file paths with Pillow (so 16-bit PNGs keep their depth); pass other inputs through.

        Args:
            images: an image, a path, or (nested) lists of them.

        Returns:
            The same structure with paths replaced by PIL images.

        Raises:
            FileNotFoundError: a path does not exist.
            ValueError: a file cannot be decoded as an image.
        """
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
        back as one plane viewed as 3 channels (see `resize`).

        Args:
            image: a PIL image, numpy array or tensor (see the class docstring for layouts and ranges).
            input_data_format: channel layout of arrays, inferred when `None`.
            device: where to put the tensor.

        Returns:
            The `[3, H, W]` tensor.

        Raises:
            ValueError: see the class docstring.
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
        return pixels if device is None else pixels.to(device)

    def resize(self, image: torch.Tensor, size: SizeDict, **kwargs) -> torch.Tensor:
        """Resize `[..., 3, H, W]` as the torchvision backend does, but a grayscale view only once.

        Args:
            image: the images; a grayscale image is one plane viewed as 3 channels (channel stride 0).
            size: the target size.
            **kwargs: `resample`, `antialias` as in `TorchvisionBackend.resize`.

        Returns:
            The resized images (a grayscale one again as a 3-channel view).
        """
        # Radiographs are gray: resizing the shared plane once is 3x less work than resizing three copies.
        if image.stride(-3) == 0:
            plane = super().resize(image[..., :1, :, :], size, **kwargs)
            return plane.expand(*plane.shape[:-3], image.shape[-3], *plane.shape[-2:])
        return super().resize(image, size, **kwargs)


def _is_2d_array(image: Any) -> bool:
    """Whether `image` is a numpy array or tensor `[H, W]`."""
    return isinstance(image, (np.ndarray, torch.Tensor)) and image.ndim == 2


def _open_image(path: Path) -> Image.Image:
    """Decode an image file fully (so the file is closed), naming it in any error."""
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"could not decode image file {path}: {error}") from error
    return image


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

    Raises:
        ValueError: unsupported type, boolean/complex pixels, or values outside the storage type's range.
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
