"""Model configuration: one typed dataclass, per-dataset values in named presets.

Networks never branch on the dataset: everything that differs between datasets (image size,
pose channels) lives here, and the command line only overrides fields of a preset.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, Tuple

WARP_BACKENDS = ("tfa", "gather")
ARCHITECTURES = ("rf", "gfla")
FULL_RESOLUTION_MODES = ("conv", "space_to_depth")
GFLA_LEVELS = ("h8", "h4")  # feature levels where GFLA may apply local attention, coarse first


class SerializableConfig:
    """What the frozen config dataclasses (`ModelConfig`, `TrainConfig`) share: the check of
    `replace`'s field names, and the dict / JSON round trip (`to_dict` is `dataclasses.asdict`
    unless a config overrides it)."""

    def check_field_names(self, changes: Dict[str, Any]) -> None:
        """Raises ValueError naming the keys of `changes` that are not fields of this config."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown {type(self).__name__} fields: {sorted(unknown)}")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]):
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class ModelConfig(SerializableConfig):
    """Hyperparameters of the generator (paper supplementary, tables 5-7).

    Attributes:
        name: preset name, kept for bookkeeping only.
        image_height: H of source and target images; divisible by 32.
        image_width: W; divisible by 32.
        pose_channels: Cp of a pose map: 18 keypoint heatmaps, 21 view one-hots, 6 camera
            DOF, 3 for an RGB landmark drawing.
        width_multiplier: scales every channel count (1.0 is the paper's network; 0.25 or
            0.5 give small and mobile variants).
        min_channels: lower bound for a scaled channel count.
        use_residual_flow: the RF block predicts a residual flow (paper eq. 4-5).
        use_occlusion: blend in the target feature where the occlusion mask says so (eq. 6).
        use_attention: weight sources by a softmax over K of the attention logits; otherwise
            all sources weigh 1/K.
        warp_backend: "tfa" (tfa.image.resampler) or "gather" (pure TF, export-safe).
        leaky_relu_slope: slope of the LeakyReLU used in every residual block.
        order_invariant_fusion: accumulate the fusion over K in float64 so that the output
            does not depend on the order of the sources even at float32 rounding level
            (`ResidualFusingBlock(order_invariant=...)`); TFLite exports switch it off.
        architecture: "rf" (the residual-flow `Generator`) or "gfla" (the single-source
            `GFLAGenerator`, Ren et al. CVPR 2020); `tfrf.models.build_generator` maps it.
        full_resolution: how the residual-flow generator (architecture "rf") works at H x W.
            "conv" (the paper's network, every existing checkpoint): the first block of the
            source appearance extractor, of the flow confidence extractor and of the pose
            encoder is a ResBlockDown whose convolutions run at H x W, and the decoder ends in a
            ResBlockUp to H x W and a 3x3 conv to RGB. "space_to_depth" (for on-device use: no
            convolution at full resolution): each of those first blocks takes SPACE_TO_DEPTH(2)
            of its input and runs its convolutions at H/2 (`SpaceToDepthResBlockDown`), and the
            decoder's last block stays at H/2 (a ResBlock) and its 3x3 conv gives 4 x 3
            channels that DEPTH_TO_SPACE(2) turns into the H x W image. Every other shape,
            the per-source flows, occlusion, attention and residual-flow fusing at H/8 and H/4
            are the same in both; the weights of one do not load into the other.
        gfla_attention_levels: GFLA only: the levels ("h8", "h4", coarse first) where the target
            network applies local attention and the flow network predicts a flow and a mask.
        gfla_attention_kernel_sizes: GFLA only: the local-attention patch size k at each of
            those levels (also the window of GFLA's affine regularisation).
        gfla_view_synthesis: GFLA only: the view-synthesis variant (GFLA's ShapeNet model) for
            vector poses broadcast over H x W: the flow network sees the source image and the
            pose difference at its bottleneck, the target network decodes the target pose.
    """

    name: str = "custom"
    image_height: int = 256
    image_width: int = 256
    pose_channels: int = 18
    width_multiplier: float = 1.0
    min_channels: int = 8
    use_residual_flow: bool = True
    use_occlusion: bool = True
    use_attention: bool = True
    warp_backend: str = "tfa"
    leaky_relu_slope: float = 0.1
    order_invariant_fusion: bool = True
    architecture: str = "rf"
    full_resolution: str = "conv"
    gfla_attention_levels: Tuple[str, ...] = ("h8", "h4")
    gfla_attention_kernel_sizes: Tuple[int, ...] = (3, 5)
    gfla_view_synthesis: bool = False

    def __post_init__(self):
        # JSON gives lists: keep tuples so that configs compare (and hash) equal after a round trip.
        object.__setattr__(self, "gfla_attention_levels", tuple(self.gfla_attention_levels))
        object.__setattr__(self, "gfla_attention_kernel_sizes", tuple(int(k) for k in self.gfla_attention_kernel_sizes))
        for field in ("image_height", "image_width"):
            value = getattr(self, field)
            if value <= 0 or value % 32:
                raise ValueError(f"ModelConfig.{field} must be a positive multiple of 32, got {value}")
        if self.pose_channels <= 0:
            raise ValueError(f"ModelConfig.pose_channels must be positive, got {self.pose_channels}")
        if self.width_multiplier <= 0:
            raise ValueError(f"ModelConfig.width_multiplier must be positive, got {self.width_multiplier}")
        if self.warp_backend not in WARP_BACKENDS:
            raise ValueError(f"ModelConfig.warp_backend must be one of {WARP_BACKENDS}, got {self.warp_backend!r}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"ModelConfig.architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.full_resolution not in FULL_RESOLUTION_MODES:
            raise ValueError(
                f"ModelConfig.full_resolution must be one of {FULL_RESOLUTION_MODES}, got {self.full_resolution!r}"
            )
        if self.full_resolution != "conv" and self.architecture != "rf":
            raise ValueError(
                f"ModelConfig.full_resolution={self.full_resolution!r} applies to architecture 'rf' only, got "
                f"architecture {self.architecture!r} (use full_resolution='conv')"
            )
        levels, sizes = self.gfla_attention_levels, self.gfla_attention_kernel_sizes
        if not levels or list(levels) != [level for level in GFLA_LEVELS if level in levels]:
            raise ValueError(
                f"ModelConfig.gfla_attention_levels must be a non-empty, ordered subset of {GFLA_LEVELS}, got {levels}"
            )
        if len(sizes) != len(levels) or any(k < 1 for k in sizes):
            raise ValueError(
                f"ModelConfig.gfla_attention_kernel_sizes must hold one positive kernel size per attention level "
                f"{levels}, got {sizes}"
            )

    @property
    def image_size(self) -> Tuple[int, int]:
        return (self.image_height, self.image_width)

    def channels(self, base: int) -> int:
        """Channel count of a layer whose paper width is `base`, after the multiplier."""
        return max(self.min_channels, int(round(base * self.width_multiplier)))

    def replace(self, **changes: Any) -> "ModelConfig":
        self.check_field_names(changes)
        return dataclasses.replace(self, **changes)

    @property
    def gfla_kernel_sizes(self) -> Dict[str, int]:
        """GFLA's local-attention kernel size per attention level, e.g. {"h8": 3, "h4": 5}."""
        return dict(zip(self.gfla_attention_levels, self.gfla_attention_kernel_sizes))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "ModelConfig":
        """A named preset (see `PRESETS`), with optional field overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return PRESETS[name].replace(**overrides)

    @classmethod
    def ablation(cls, base: "ModelConfig", variant: str) -> "ModelConfig":
        """The paper's table-4 ablations of `base`: full, no_residual_flow, no_occlusion,
        no_attention, baseline (all three off)."""
        switches = {
            "full": {},
            "no_residual_flow": {"use_residual_flow": False},
            "no_occlusion": {"use_occlusion": False},
            "no_attention": {"use_attention": False},
            "baseline": {"use_residual_flow": False, "use_occlusion": False, "use_attention": False},
        }
        if variant not in switches:
            raise ValueError(f"unknown ablation {variant!r}; choose one of {sorted(switches)}")
        return base.replace(**switches[variant])


# The gfla_* fields matter only with architecture="gfla" (GFLA's own settings: attention at H/8
# k=3 and H/4 k=5 for DeepFashion and ShapeNet, H/4 k=3 for Market; vector poses take the
# view-synthesis variant, which GFLA has for ShapeNet only: KITTI and the synthetic chairs follow it).
PRESETS: Dict[str, ModelConfig] = {
    "deepfashion": ModelConfig(name="deepfashion", image_height=256, image_width=256, pose_channels=18),
    "market1501": ModelConfig(
        name="market1501", image_height=128, image_width=64, pose_channels=18,
        gfla_attention_levels=("h4",), gfla_attention_kernel_sizes=(3,),
    ),
    "shapenet_chairs": ModelConfig(
        name="shapenet_chairs", image_height=256, image_width=256, pose_channels=21, gfla_view_synthesis=True
    ),
    "kitti": ModelConfig(name="kitti", image_height=256, image_width=256, pose_channels=6, gfla_view_synthesis=True),
    "voxceleb2": ModelConfig(name="voxceleb2", image_height=256, image_width=256, pose_channels=3),
    # On-device face animation (serving/README.md, "Mobile"): the voxceleb2 network at 1/16 width
    # (4 channels at full resolution, 32 at H/32), per-source flows, occlusion, attention and RF
    # fusing at H/8 and H/4 unchanged; exported with --quantize full-int8 for 256x256 video rate.
    "voxceleb2_mobile": ModelConfig(
        name="voxceleb2_mobile", image_height=256, image_width=256, pose_channels=3, width_multiplier=0.0625,
        min_channels=4, full_resolution="space_to_depth",
    ),
    "synthetic": ModelConfig(
        name="synthetic", image_height=64, image_width=64, pose_channels=21, gfla_view_synthesis=True
    ),
    # The built-in chairs seen by uncalibrated cameras (`tfrf.data.synthetic`, misaligned=True; on the
    # command line `--data-dir synthetic --dataset misaligned`): the `synthetic` network, named apart
    # so that runs on the variant say so in their config.
    "synthetic_misaligned": ModelConfig(
        name="synthetic_misaligned", image_height=64, image_width=64, pose_channels=21, gfla_view_synthesis=True
    ),
}
