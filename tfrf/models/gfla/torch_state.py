"""GFLA's official generator state dicts (`latest_net_G.pth`) onto a built `GFLAGenerator`.

The converter is a table from GFLA's state-dict keys (`source.block0.model.2.weight`,
`flow_net.decoder1.shortcut.0.weight`, `target.attn0.fully_connect_layer.0.weight`, ...) to
the Keras variables of a built `GFLAGenerator`, with a layout transform per entry:

- convolution weight (out, in, kh, kw) -> Keras kernel (kh, kw, in, out);
- transposed convolution weight (in, out, kh, kw) -> `Conv2DTranspose` kernel (kh, kw, out, in);
- biases and instance-norm weight/bias unchanged.

GFLA's `Jump` and `Output` modules register their convolution twice (as `conv1` and inside
`model`, index 2), so their state dicts hold both `...conv1.weight` and `...model.2.weight`: the
converter checks that the two are equal and uses one. Missing keys, unused keys and shape
mismatches are refused by name before any variable changes. A state dict arrives as a `.pth` file
(read with PyTorch, an optional dependency), an `.npz` file with the same keys, or a mapping of
numpy arrays: reading and assigning are `tfrf.metrics.torch_weights`', shared with the metric
networks' converters.

This module works on a generator it is given (`GFLAGenerator.load_torch_weights` calls it);
`tfrf.models.gfla_convert.convert_gfla_state_dict` builds one from a config.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np

from tfrf.config import ModelConfig
from tfrf.metrics import torch_weights

CONV, TRANSPOSED_CONV, VECTOR = "conv", "transposed_conv", "vector"
# conv (out, in, kh, kw) -> (kh, kw, in, out); transposed conv (in, out, kh, kw) -> (kh, kw, out, in).
TRANSFORMS = {CONV: torch_weights.conv_kernel, TRANSPOSED_CONV: torch_weights.conv_kernel,
              VECTOR: torch_weights.identity}

# GFLA's decoder indices of each level: the flow net's `output{i}` / `mask{i}` and the target
# net's `attn{i}` / `decoder{i}`.
FLOW_HEAD_INDEX = {"h8": 1, "h4": 2}
TARGET_STAGE_INDEX = {"h8": 0, "h4": 1, "h2": 2}


# --- the key table ---------------------------------------------------------------------------

Plan = Dict[str, Tuple[Any, str]]  # key -> (tf.Variable, layout)


def _conv(plan: Plan, prefix: str, layer, layout: str = CONV) -> None:
    plan[f"{prefix}.weight"] = (layer.kernel, layout)
    plan[f"{prefix}.bias"] = (layer.bias, VECTOR)


def _norm(plan: Plan, prefix: str, layer) -> None:
    plan[f"{prefix}.weight"] = (layer.gamma, VECTOR)
    plan[f"{prefix}.bias"] = (layer.beta, VECTOR)


def _encoder_block(plan: Plan, prefix: str, block) -> None:
    """GFLA `EncoderBlock`: model = [norm, act, conv 4x4 s2, norm, act, conv 3x3]."""
    _norm(plan, f"{prefix}.model.0", block.norm_in)
    _conv(plan, f"{prefix}.model.2", block.conv_down)
    _norm(plan, f"{prefix}.model.3", block.norm_hidden)
    _conv(plan, f"{prefix}.model.5", block.conv)


def _residual_block(plan: Plan, prefix: str, block) -> None:
    """GFLA `ResBlock`: model = [norm, act, conv, norm, act, conv], shortcut = [1x1 conv] if any."""
    _norm(plan, f"{prefix}.model.0", block.norm_in)
    _conv(plan, f"{prefix}.model.2", block.conv1)
    _norm(plan, f"{prefix}.model.3", block.norm_hidden)
    _conv(plan, f"{prefix}.model.5", block.conv2)
    if block.shortcut is not None:
        _conv(plan, f"{prefix}.shortcut.0", block.shortcut)


def _decoder_block(plan: Plan, prefix: str, block) -> None:
    """GFLA `ResBlockDecoder`: model = [norm, act, conv, norm, act, convT], shortcut = [convT]."""
    _norm(plan, f"{prefix}.model.0", block.norm_in)
    _conv(plan, f"{prefix}.model.2", block.conv)
    _norm(plan, f"{prefix}.model.3", block.norm_hidden)
    _conv(plan, f"{prefix}.model.5", block.conv_up, TRANSPOSED_CONV)
    _conv(plan, f"{prefix}.shortcut.0", block.shortcut, TRANSPOSED_CONV)


def _jump_block(plan: Plan, duplicates: List[Tuple[str, str]], prefix: str, block) -> None:
    """GFLA `Jump` / `Output`: the conv is both `conv1` and `model.2` (model = [act, pad, conv, ...])."""
    _conv(plan, f"{prefix}.conv1", block.conv)
    _conv(plan, f"{prefix}.model.2", block.conv)
    duplicates += [(f"{prefix}.conv1.{name}", f"{prefix}.model.2.{name}") for name in ("weight", "bias")]


def torch_key_plan(generator) -> Tuple[Plan, List[Tuple[str, str]]]:
    """Every key of GFLA's generator state dict for `generator`'s configuration.

    Args:
        generator: a built `GFLAGenerator`.

    Returns:
        `{key: (variable, layout)}` and the pairs of keys that GFLA stores twice.
    """
    plan: Plan = {}
    duplicates: List[Tuple[str, str]] = []
    source = generator.source_extractor
    for index, block in enumerate(source.blocks):
        _encoder_block(plan, "source.block0" if index == 0 else f"source.encoder{index - 1}", block)

    flow = generator.flow_extractor
    for index, block in enumerate(flow.encoder):
        _encoder_block(plan, "flow_net.block0" if index == 0 else f"flow_net.encoder{index - 1}", block)
    if flow.pose_fusion is not None:
        _residual_block(plan, "flow_net.cat.model.0", flow.pose_fusion)
    for index, (decoder, jump) in enumerate(zip(flow.decoders, flow.jumps)):
        _decoder_block(plan, f"flow_net.decoder{index}", decoder)
        _jump_block(plan, duplicates, f"flow_net.jump{index}", jump)
    for level in flow.levels:
        _conv(plan, f"flow_net.output{FLOW_HEAD_INDEX[level]}", flow.flow_heads[level])
        _conv(plan, f"flow_net.mask{FLOW_HEAD_INDEX[level]}.0", flow.mask_heads[level])

    target = generator.predictor
    for index, block in enumerate(target.pose_blocks):
        if target.view_synthesis:  # ShapeNetTargetNet: block0, block1 (decoder blocks)
            _decoder_block(plan, f"target.block{index}", block)
        else:
            _encoder_block(plan, "target.block0" if index == 0 else f"target.encoder{index - 1}", block)
    for level, attention in target.attention.items():
        prefix = f"target.attn{TARGET_STAGE_INDEX[level]}.fully_connect_layer"
        _conv(plan, f"{prefix}.0", attention.block_conv)
        _conv(plan, f"{prefix}.2", attention.coefficient_conv)
    for index, (residual, up) in enumerate(zip(target.residual_blocks, target.up_blocks)):
        _residual_block(plan, f"target.decoder{index}.0.model.0", residual)
        _decoder_block(plan, f"target.decoder{index}.1", up)
    _jump_block(plan, duplicates, "target.outconv", target.output_block)
    return plan, duplicates


# --- reading and assigning -------------------------------------------------------------------


def read_state_dict(source) -> Dict[str, np.ndarray]:
    """GFLA's state dict as `{key: numpy array}` (PyTorch layout).

    Args:
        source: a `.pth` path (needs PyTorch), an `.npz` path with the same keys, or a mapping
            of arrays (numpy, or anything with `.numpy()`). Keys saved from `nn.DataParallel`
            (`module.` prefixed) are accepted.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: an unknown file type.
        ImportError: a `.pth` file and no PyTorch (the message says how to make an `.npz`).
    """
    state = torch_weights.read_state_dict(source, what="GFLA checkpoint")
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


def load_torch_weights(generator, state) -> None:
    """Assign GFLA's generator state dict to `generator` (built first if needed).

    Raises:
        ValueError: naming the missing keys, the unused keys, each shape mismatch, or a
            duplicated Jump/Output convolution whose two copies differ; no variable changes then.
    """
    if not generator.built:
        generator(generator.dummy_inputs(), training=False)
    state = read_state_dict(state)
    plan, duplicates = torch_key_plan(generator)
    what = f"GFLA state dict for GFLAGenerator({_describe(generator.config)})"
    differing = [first for first, second in duplicates
                 if first in state and second in state and not np.array_equal(state[first], state[second])]
    if differing:
        raise ValueError(f"{what}: the duplicated Jump/Output convolutions differ at {', '.join(sorted(differing))}")
    plan = {key: (variable, TRANSFORMS[layout]) for key, (variable, layout) in plan.items()}
    torch_weights.assign_state(state, plan, what)


def _describe(config: ModelConfig) -> str:
    levels = ", ".join(f"{level} k={k}" for level, k in config.gfla_kernel_sizes.items())
    variant = "view synthesis" if config.gfla_view_synthesis else "pose transfer"
    return (f"{config.name!r}: {variant}, {config.pose_channels} pose channels, attention {levels}, "
            f"width x{config.width_multiplier:g}")
