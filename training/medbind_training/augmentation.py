"""Train-time augmentation, applied by the pretraining collator after the processor and never at inference.

The processor in `modeling_medbind` (which ships with every model) is deterministic; what only training needs lives
here, as CLIP's augmentation lives in `run_clip.py` rather than in `CLIPImageProcessor`. Both draw from the generator
the collator seeds per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from modeling_medbind import MedBindCXRConfig, MedBindImageProcessor


@dataclass
class CXRAugmentation:
    """MedCLIP's train-time chest X-ray augmentation, on a normalised batch: horizontal flip, brightness/contrast
    jitter and a random affine (rotation, translation, scale), with MedCLIP's ranges as defaults
    (`RandomHorizontalFlip(0.5)`, `ColorJitter(0.2, 0.2)`, `RandomAffine(degrees=10, translate=(0.0625, 0.0625),
    scale=(0.8, 1.1))`), and with `crop_size` MedCLIP's `RandomCrop(224)` of its 256 x 256 resize, last (the
    processor's `preprocessing="medclip"`; the collator then asks the processor for the uncropped resize).

    Each image draws its own parameters. The jitter acts on intensities, so the batch is un-normalised with
    `image_mean` / `image_std` (default: the processor's), jittered and clamped to [0, 1] like torchvision's
    `ColorJitter`, warped (the area moved in from outside the image is black, like `RandomAffine`'s fill 0) and
    normalised again. Contrast blends each image with its mean intensity over all channels (torchvision uses the
    luminance mean; radiographs are gray, so the two agree). Rotations are uniform in [-degrees, degrees], shifts in
    [-translate, translate] of the width and of the height, zooms in `scale`, brightness and contrast factors in
    [1 - value, 1 + value]; a crop of side `crop_size` sits at a uniformly drawn place (None: no crop, the processor
    has centre-cropped already).
    """

    image_mean: Sequence[float] = tuple(MedBindImageProcessor.image_mean)
    image_std: Sequence[float] = tuple(MedBindImageProcessor.image_std)
    degrees: float = 10.0
    translate: float = 0.0625
    scale: tuple[float, float] = (0.8, 1.1)
    flip_probability: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    crop_size: int | None = None

    def __post_init__(self) -> None:
        if not (0 < self.scale[0] <= self.scale[1]):
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {self.scale}")
        if not 0.0 <= self.flip_probability <= 1.0:
            raise ValueError(f"flip_probability must lie in [0, 1], got {self.flip_probability}")
        if not (0.0 <= self.brightness < 1.0 and 0.0 <= self.contrast < 1.0 and min(self.degrees, self.translate) >= 0):
            raise ValueError("brightness and contrast must lie in [0, 1); degrees and translate must be >= 0")
        if self.crop_size is not None and self.crop_size < 1:
            raise ValueError(f"crop_size must be a positive number of pixels, got {self.crop_size}")
        self.image_mean = torch.tensor(self.image_mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.image_std = torch.tensor(self.image_std, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, pixel_values: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a normalised `[B, 3, H, W]` batch (the processor's output), drawing on `generator`'s device: a new
        tensor (`[B, 3, crop_size, crop_size]` with a crop), normalised like the input."""
        if not (isinstance(pixel_values, torch.Tensor) and pixel_values.ndim == 4 and pixel_values.is_floating_point()):
            raise ValueError("pixel_values must be a floating tensor [batch, channels, height, width]")
        batch_size, _, height, width = pixel_values.shape
        if self.crop_size is not None and self.crop_size > min(height, width):
            raise ValueError(f"cannot crop {self.crop_size} x {self.crop_size} out of images of {height} x {width}")
        draw_device = generator.device if generator is not None else pixel_values.device
        uniform = torch.rand(batch_size, 7, generator=generator, device=draw_device).to(pixel_values)
        mean, std = self.image_mean.to(pixel_values), self.image_std.to(pixel_values)

        intensities = pixel_values * std + mean
        brightness = (1 + self.brightness * (2 * uniform[:, 0] - 1)).view(-1, 1, 1, 1)
        intensities = (intensities * brightness).clamp(0, 1)
        contrast = (1 + self.contrast * (2 * uniform[:, 1] - 1)).view(-1, 1, 1, 1)
        image_means = intensities.mean(dim=(1, 2, 3), keepdim=True)
        intensities = (contrast * intensities + (1 - contrast) * image_means).clamp(0, 1)

        theta = _affine_theta(
            angle=torch.deg2rad(self.degrees * (2 * uniform[:, 2] - 1)),
            zoom=self.scale[0] + (self.scale[1] - self.scale[0]) * uniform[:, 3],
            shift=self.translate * (2 * uniform[:, 4:6] - 1),
            flip=uniform[:, 6] < self.flip_probability,
            aspect=height / width,
        )
        grid = F.affine_grid(theta, list(intensities.shape), align_corners=False)
        intensities = F.grid_sample(intensities, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if self.crop_size is not None:
            # Drawn after the other parameters, so that a run without a crop draws exactly what it always drew.
            corners = torch.rand(batch_size, 2, generator=generator, device=draw_device)
            intensities = _random_crops(intensities, corners, self.crop_size)
        return (intensities - mean) / std


def _random_crops(images: torch.Tensor, corners: torch.Tensor, size: int) -> torch.Tensor:
    """`[B, C, size, size]` crops of `[B, C, H, W]`, the top-left corner of each at its `corners` row (uniform in
    [0, 1)^2, for (y, x)) scaled to the `H - size + 1` by `W - size + 1` places a crop can take."""
    places = torch.tensor(images.shape[-2:], device=corners.device) - size + 1
    tops, lefts = (corners * places).long().clamp(max=places - 1).T.tolist()
    crops = [image[:, top : top + size, left : left + size] for image, top, left in zip(images, tops, lefts)]
    return torch.stack(crops)


def cxr_augmentation(cxr_config: MedBindCXRConfig, image_processor: MedBindImageProcessor) -> CXRAugmentation:
    """The train-time augmentation of a CXR tower: `CXRAugmentation` in its processor's normalisation, with MedCLIP's
    random crop of `image_size` where the tower takes MedCLIP's preprocessing (`cxr_config.preprocessing`).
    """
    crop_size = cxr_config.image_size if cxr_config.preprocessing == "medclip" else None
    return CXRAugmentation(image_processor.image_mean, image_processor.image_std, crop_size=crop_size)


def _affine_theta(
    angle: torch.Tensor, zoom: torch.Tensor, shift: torch.Tensor, flip: torch.Tensor, aspect: float
) -> torch.Tensor:
    """`[B, 2, 3]` matrices for `affine_grid`: output -> input coordinates of a flip, then rotation/zoom/shift.

    `affine_grid` works in coordinates normalised to [-1, 1] per axis, so a rotation by `angle` in pixels becomes
    `D R D^-1` with `D = diag(1, 1/aspect)` (aspect = H / W), and a shift by a fraction `s` of the side is `2 s`.
    """
    cos, sin = torch.cos(angle), torch.sin(angle)
    # inverse of the forward map (rotate by angle, zoom): input = R(-angle) / zoom @ output
    linear = torch.stack(
        [torch.stack([cos, sin * aspect], dim=-1), torch.stack([-sin / aspect, cos], dim=-1)], dim=-2
    ) / zoom.view(-1, 1, 1)
    mirror = torch.ones_like(linear[:, :, :1]).expand(-1, -1, 2).clone()
    mirror[:, :, 0] = torch.where(flip, -1.0, 1.0).view(-1, 1)
    linear = linear * mirror  # flipping the output's x axis = negating the first column
    offset = -(linear @ (2 * shift).unsqueeze(-1))
    return torch.cat([linear, offset], dim=-1)


class ECGNoiseAugmentation:
    """Train-time ECG augmentation: additive Gaussian noise (the paper's "Gaussian-noise augmentation") on already
    extracted `ecg_values`, never part of [`MedBindECGFeatureExtractor`], so inference is deterministic. `noise_std` is
    in the units of `ecg_values` (z-scores by default, so 0.05 is 5% of each lead's standard deviation).
    """

    def __init__(self, noise_std: float = 0.05):
        if noise_std < 0:
            raise ValueError(f"noise_std must be non-negative, got {noise_std}")
        self.noise_std = noise_std

    def __call__(self, ecg_values: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Add noise to a `[B, leads, samples]` batch, drawn on `generator`'s device: a new tensor, same shape, dtype
        and device."""
        if not (isinstance(ecg_values, torch.Tensor) and ecg_values.ndim == 3 and ecg_values.is_floating_point()):
            raise ValueError("ecg_values must be a floating tensor [batch, leads, samples]")
        device = generator.device if generator is not None else ecg_values.device
        noise = torch.randn(ecg_values.shape, generator=generator, device=device, dtype=ecg_values.dtype)
        return ecg_values + self.noise_std * noise.to(ecg_values.device)
