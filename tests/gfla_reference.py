"""An independent numpy reference of GFLA's PyTorch generator, for the GFLA tests.

Written from GFLA's own module structure (RenYurui/Global-Flow-Local-Attention,
`model/networks/generator.py` and `base_function.py`: PoseGenerator / ShapeNetGenerator with
ngf=64, img_f=512, layers=3, num_blocks=2, instance norm, LeakyReLU(0.1); the flow net with
ngf=32, img_f=256, 5 encoder layers), never from tfrf's model:

- `state_dict_shapes(...)`: every key and shape of `latest_net_G.pth`;
- `random_state_dict(...)`: random weights with those shapes (the duplicated Jump/Output convs
  share one array, as in PyTorch);
- `forward(state, ...)`: the generator's forward pass in NCHW, PyTorch semantics, float64.

`randomize_weights(generator)` gives a tfrf GFLAGenerator of any width weights whose output is
image-like (GFLA's own initialisation, orthogonal with gain 0.02, gives a nearly constant image).
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

Shapes = Dict[str, Tuple[int, ...]]
HIDDEN = 128  # ExtractorAttn's hidden_nc


# --- the state dict ----------------------------------------------------------------------------

def _norm(prefix, channels):
    return {f"{prefix}.weight": (channels,), f"{prefix}.bias": (channels,)}


def _conv(prefix, out_channels, in_channels, kernel):
    return {f"{prefix}.weight": (out_channels, in_channels, kernel, kernel), f"{prefix}.bias": (out_channels,)}


def _conv_transpose(prefix, in_channels, out_channels, kernel):
    return {f"{prefix}.weight": (in_channels, out_channels, kernel, kernel), f"{prefix}.bias": (out_channels,)}


def _encoder_block(prefix, cin, cout):
    return {**_norm(f"{prefix}.model.0", cin), **_conv(f"{prefix}.model.2", cout, cin, 4),
            **_norm(f"{prefix}.model.3", cout), **_conv(f"{prefix}.model.5", cout, cout, 3)}


def _res_block(prefix, cin, cout, hidden):
    shapes = {**_norm(f"{prefix}.model.0", cin), **_conv(f"{prefix}.model.2", hidden, cin, 3),
              **_norm(f"{prefix}.model.3", hidden), **_conv(f"{prefix}.model.5", cout, hidden, 3)}
    if cin != cout:
        shapes.update(_conv(f"{prefix}.shortcut.0", cout, cin, 1))
    return shapes


def _decoder_block(prefix, cin, cout, hidden):
    return {**_norm(f"{prefix}.model.0", cin), **_conv(f"{prefix}.model.2", hidden, cin, 3),
            **_norm(f"{prefix}.model.3", hidden), **_conv_transpose(f"{prefix}.model.5", hidden, cout, 3),
            **_conv_transpose(f"{prefix}.shortcut.0", cin, cout, 3)}


def _jump(prefix, cin, cout):  # Jump and Output: conv1 registered again as model.2
    return {**_conv(f"{prefix}.conv1", cout, cin, 3), **_conv(f"{prefix}.model.2", cout, cin, 3)}


def state_dict_shapes(structure_nc: int, kernel_sizes: Dict[int, int], view_synthesis: bool = False) -> Shapes:
    """Every key of GFLA's generator state dict with its shape.

    Args:
        structure_nc: pose channels (18 keypoints; 21 for ShapeNet's one-hots).
        kernel_sizes: GFLA's `--kernel_size`, {attn_layer: k}: layer 3 is H/8, layer 2 is H/4
            (DeepFashion {3: 3, 2: 5}, Market {2: 3}).
        view_synthesis: ShapeNetGenerator instead of PoseGenerator.
    """
    shapes: Shapes = {}
    # PoseSourceNet(3, ngf=64, img_f=512, layers=3)
    shapes.update(_encoder_block("source.block0", 3, 64))
    shapes.update(_encoder_block("source.encoder0", 64, 128))
    shapes.update(_encoder_block("source.encoder1", 128, 256))
    # PoseFlowNet / ShapeNetFlowNet(ngf=32, img_f=256, encoder_layer=5)
    flow_in = 3 if view_synthesis else 3 + 2 * structure_nc
    widths = [32, 64, 128, 256, 256]
    shapes.update(_encoder_block("flow_net.block0", flow_in, 32))
    for i in range(4):
        shapes.update(_encoder_block(f"flow_net.encoder{i}", widths[i], widths[i + 1]))
    if view_synthesis:
        shapes.update(_res_block("flow_net.cat.model.0", 256 + structure_nc, 256, 256 + structure_nc))
    decoder_layers = 5 - min(kernel_sizes)
    for i, (cin, cout) in enumerate([(256, 256), (256, 128), (128, 64)][:decoder_layers]):
        shapes.update(_decoder_block(f"flow_net.decoder{i}", cin, cout, cout))
        shapes.update(_jump(f"flow_net.jump{i}", cout, cout))
        if 5 - i - 1 in kernel_sizes:
            shapes.update(_conv(f"flow_net.output{i}", 2, cout, 3))
            shapes.update(_conv(f"flow_net.mask{i}.0", 1, cout, 3))
    # PoseTargetNet / ShapeNetTargetNet(ngf=64, img_f=512, layers=3, num_blocks=2)
    if view_synthesis:
        shapes.update(_decoder_block("target.block0", structure_nc, 64, structure_nc))
        shapes.update(_decoder_block("target.block1", 64, 256, 64))
    else:
        shapes.update(_encoder_block("target.block0", structure_nc, 64))
        shapes.update(_encoder_block("target.encoder0", 64, 128))
        shapes.update(_encoder_block("target.encoder1", 128, 256))
    for i, (cin, cout) in enumerate([(256, 128), (128, 64), (64, 64)]):
        shapes.update(_res_block(f"target.decoder{i}.0.model.0", cin, cin, cin))
        shapes.update(_decoder_block(f"target.decoder{i}.1", cin, cout, cin))
        if 3 - i in kernel_sizes:
            k = kernel_sizes[3 - i]
            shapes.update(_conv(f"target.attn{i}.fully_connect_layer.0", HIDDEN, 2 * cin, k))
            shapes.update(_conv(f"target.attn{i}.fully_connect_layer.2", k * k, HIDDEN, 1))
    shapes.update(_jump("target.outconv", 64, 3))
    return shapes


def parameter_count(shapes: Shapes, prefix: str = "") -> int:
    """Parameters as PyTorch's `parameters()` counts them (each duplicated conv once)."""
    return sum(int(np.prod(shape)) for key, shape in shapes.items()
               if key.startswith(prefix) and not _is_duplicate(key))


def _is_duplicate(key: str) -> bool:
    return ".model.2." in key and (".jump" in key or ".outconv." in key)


def random_state_dict(shapes: Shapes, seed: int = 0, flow_scale: float = 1.0) -> Dict[str, np.ndarray]:
    """Random float32 weights of those shapes, scaled so that activations stay O(1).

    4-D weights ~ N(0, 1/(shape[1]*kh*kw)), biases ~ N(0, 0.1), norm weights ~ 1 + N(0, 0.1); the flow
    heads are multiplied by `flow_scale` (flows of a few pixels, some pointing outside).
    """
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in shapes.items():
        if _is_duplicate(key):
            continue
        if len(shape) == 4:
            value = rng.normal(size=shape) / np.sqrt(np.prod(shape[1:]))
        elif key.endswith(".weight"):
            value = 1.0 + 0.1 * rng.normal(size=shape)
        else:
            value = 0.1 * rng.normal(size=shape)
        if ".output" in key:
            value = value * flow_scale
        state[key] = value.astype(np.float32)
    for key in shapes:
        if _is_duplicate(key):
            state[key] = state[key.replace(".model.2.", ".conv1.")]
    return state


# --- PyTorch layers in numpy (NCHW) --------------------------------------------------------------

def conv2d(x, weight, bias, stride=1, padding=0):
    """`nn.Conv2d`: x [B, C, H, W], weight (O, C, kh, kw)."""
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    _, _, height, width = x.shape
    _, _, kh, kw = weight.shape
    out_h, out_w = (height - kh) // stride + 1, (width - kw) // stride + 1
    out = np.zeros((x.shape[0], weight.shape[0], out_h, out_w))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i:i + stride * out_h:stride, j:j + stride * out_w:stride]
            out += np.moveaxis(np.tensordot(weight[:, :, i, j], patch, axes=([1], [1])), 0, 1)
    return out + bias[None, :, None, None]


def conv_transpose2d(x, weight, bias, stride=2, padding=1, output_padding=1):
    """`nn.ConvTranspose2d`: weight (C_in, C_out, kh, kw); out = (H-1)*s - 2p + k + op."""
    batch, _, height, width = x.shape
    _, out_channels, kh, kw = weight.shape
    full = np.zeros((batch, out_channels, (height - 1) * stride + kh, (width - 1) * stride + kw))
    for i in range(kh):
        for j in range(kw):
            full[:, :, i:i + stride * height:stride, j:j + stride * width:stride] += np.moveaxis(
                np.tensordot(weight[:, :, i, j], x, axes=([0], [1])), 0, 1)
    out_h = (height - 1) * stride - 2 * padding + kh + output_padding
    out_w = (width - 1) * stride - 2 * padding + kw + output_padding
    return full[:, :, padding:padding + out_h, padding:padding + out_w] + bias[None, :, None, None]


def instance_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(axis=(2, 3), keepdims=True)
    variance = x.var(axis=(2, 3), keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * weight[None, :, None, None] + bias[None, :, None, None]


def leaky_relu(x, slope=0.1):
    return np.where(x > 0, x, slope * x)


def block_extractor(source, flow, k):
    """GFLA's CUDA `block_extractor`: source [B, C, H, W], flow [B, 2, h, w] -> [B, C, k*h, k*w]."""
    batch, _, height, width = source.shape
    rows, cols = np.meshgrid(np.arange(k * flow.shape[2]), np.arange(k * flow.shape[3]), indexing="ij")
    row_f, col_f = rows // k, cols // k
    dy = flow[:, 1][:, row_f, col_f] + (rows % k - k // 2) + row_f  # [B, k*h, k*w]
    dx = flow[:, 0][:, row_f, col_f] + (cols % k - k // 2) + col_f
    x0, y0 = np.floor(dx), np.floor(dy)
    out = 0.0
    b = np.arange(batch)[:, None, None]
    for xi, yi, weight in ((x0, y0, (1 - (dx - x0)) * (1 - (dy - y0))), (x0 + 1, y0, (dx - x0) * (1 - (dy - y0))),
                           (x0, y0 + 1, (1 - (dx - x0)) * (dy - y0)), (x0 + 1, y0 + 1, (dx - x0) * (dy - y0))):
        xi = np.clip(xi, 0, width - 1).astype(int)
        yi = np.clip(yi, 0, height - 1).astype(int)
        out = out + weight[:, None] * np.moveaxis(source[b, :, yi, xi], -1, 1)
    return out


def local_attn_reshape(coefficients, k):
    """[B, k*k, h, w] -> [B, 1, k*h, k*w]: out(k*y+i, k*x+j) = in(i*k+j, y, x)."""
    batch, _, height, width = coefficients.shape
    blocks = coefficients.reshape(batch, k, k, height, width).transpose(0, 3, 1, 4, 2)
    return blocks.reshape(batch, 1, k * height, k * width)


def avg_pool(x, k):
    batch, channels, height, width = x.shape
    return x.reshape(batch, channels, height // k, k, width // k, k).mean(axis=(3, 5))


# --- GFLA's modules ------------------------------------------------------------------------------

def encoder_block(state, prefix, x):
    x = conv2d(leaky_relu(instance_norm(x, state[f"{prefix}.model.0.weight"], state[f"{prefix}.model.0.bias"])),
               state[f"{prefix}.model.2.weight"], state[f"{prefix}.model.2.bias"], stride=2, padding=1)
    return conv2d(leaky_relu(instance_norm(x, state[f"{prefix}.model.3.weight"], state[f"{prefix}.model.3.bias"])),
                  state[f"{prefix}.model.5.weight"], state[f"{prefix}.model.5.bias"], padding=1)


def res_block(state, prefix, x):
    y = conv2d(leaky_relu(instance_norm(x, state[f"{prefix}.model.0.weight"], state[f"{prefix}.model.0.bias"])),
               state[f"{prefix}.model.2.weight"], state[f"{prefix}.model.2.bias"], padding=1)
    y = conv2d(leaky_relu(instance_norm(y, state[f"{prefix}.model.3.weight"], state[f"{prefix}.model.3.bias"])),
               state[f"{prefix}.model.5.weight"], state[f"{prefix}.model.5.bias"], padding=1)
    if f"{prefix}.shortcut.0.weight" in state:
        return y + conv2d(x, state[f"{prefix}.shortcut.0.weight"], state[f"{prefix}.shortcut.0.bias"])
    return y + x


def decoder_block(state, prefix, x):
    y = conv2d(leaky_relu(instance_norm(x, state[f"{prefix}.model.0.weight"], state[f"{prefix}.model.0.bias"])),
               state[f"{prefix}.model.2.weight"], state[f"{prefix}.model.2.bias"], padding=1)
    y = conv_transpose2d(leaky_relu(instance_norm(y, state[f"{prefix}.model.3.weight"],
                                                  state[f"{prefix}.model.3.bias"])),
                         state[f"{prefix}.model.5.weight"], state[f"{prefix}.model.5.bias"])
    return y + conv_transpose2d(x, state[f"{prefix}.shortcut.0.weight"], state[f"{prefix}.shortcut.0.bias"])


def jump(state, prefix, x, tanh=False):
    x = np.pad(leaky_relu(x), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    x = conv2d(x, state[f"{prefix}.model.2.weight"], state[f"{prefix}.model.2.bias"])
    return np.tanh(x) if tanh else x


def extractor_attention(state, prefix, source, target, flow, k):
    """`ExtractorAttn(softmax=True)`: returns (output [B, C, h, w], coefficients [B, k*k, h, w])."""
    block_source = block_extractor(source, flow, k)
    block_target = block_extractor(target, np.zeros_like(flow), k)
    hidden = conv2d(np.concatenate([block_target, block_source], axis=1),
                    state[f"{prefix}.fully_connect_layer.0.weight"], state[f"{prefix}.fully_connect_layer.0.bias"],
                    stride=k)
    logits = conv2d(leaky_relu(hidden), state[f"{prefix}.fully_connect_layer.2.weight"],
                    state[f"{prefix}.fully_connect_layer.2.bias"])
    coefficients = np.exp(logits - logits.max(axis=1, keepdims=True))
    coefficients /= coefficients.sum(axis=1, keepdims=True)
    return avg_pool(local_attn_reshape(coefficients, k) * block_source, k), coefficients


def forward(state, source, source_pose, target_pose, kernel_sizes: Dict[int, int], view_synthesis=False):
    """GFLA's generator forward pass.

    Args:
        state: the state dict (PyTorch layout).
        source: [B, 3, H, W]; source_pose, target_pose: [B, Cp, H, W] maps (view synthesis:
            [B, Cp, 1, 1] vectors, as GFLA's ShapeNet data gives them).
        kernel_sizes: {attn_layer: k} (3 = H/8, 2 = H/4).

    Returns:
        (image [B, 3, H, W], flows, masks, attention coefficients), the lists ordered H/8 first.
    """
    state = {key: np.asarray(value, np.float64) for key, value in state.items()}
    # Source net: features reversed, [H/8, H/4, H/2, image].
    features = [source]
    out = source
    for prefix in ("source.block0", "source.encoder0", "source.encoder1"):
        out = encoder_block(state, prefix, out)
        features.append(out)
    features = features[::-1]

    # Flow net.
    out = source if view_synthesis else np.concatenate([source, source_pose, target_pose], axis=1)
    skips = []
    for prefix in ["flow_net.block0"] + [f"flow_net.encoder{i}" for i in range(4)]:
        out = encoder_block(state, prefix, out)
        skips.append(out)
    if view_synthesis:
        difference = np.tile(source_pose - target_pose, (1, 1, out.shape[2], out.shape[3]))
        out = res_block(state, "flow_net.cat.model.0", np.concatenate([out, difference], axis=1))
    flows, masks = [], []
    for i in range(5 - min(kernel_sizes)):
        out = decoder_block(state, f"flow_net.decoder{i}", out) + jump(state, f"flow_net.jump{i}", skips[5 - i - 2])
        if 5 - i - 1 in kernel_sizes:
            flows.append(conv2d(out, state[f"flow_net.output{i}.weight"], state[f"flow_net.output{i}.bias"],
                                padding=1))
            mask = conv2d(out, state[f"flow_net.mask{i}.0.weight"], state[f"flow_net.mask{i}.0.bias"], padding=1)
            masks.append(1.0 / (1.0 + np.exp(-mask)))

    # Target net.
    if view_synthesis:
        # GFLA tiles the pose vector 8 x 8, i.e. H/32 at its 256 x 256.
        tiles = (1, 1, source.shape[2] // 32, source.shape[3] // 32)
        out = decoder_block(state, "target.block0", np.tile(target_pose, tiles))
        out = decoder_block(state, "target.block1", out)
    else:
        out = target_pose
        for prefix in ("target.block0", "target.encoder0", "target.encoder1"):
            out = encoder_block(state, prefix, out)
    counter, coefficients = 0, []
    for i in range(3):
        if 3 - i in kernel_sizes:
            attended, attention = extractor_attention(state, f"target.attn{i}", features[i], out, flows[counter],
                                                      kernel_sizes[3 - i])
            out = out * (1 - masks[counter]) + attended * masks[counter]
            coefficients.append(attention)
            counter += 1
        out = decoder_block(state, f"target.decoder{i}.1", res_block(state, f"target.decoder{i}.0.model.0", out))
    return jump(state, "target.outconv", out, tanh=True), flows, masks, coefficients


def randomize_weights(generator, seed: int = 0, flow_scale: float = 3.0) -> None:
    """Kernels ~ N(0, 1/fan_in), biases ~ N(0, 0.1), norm scales ~ 1 + N(0, 0.1), flow heads
    x `flow_scale` (flows of a few pixels), assigned to a built Keras GFLAGenerator."""
    rng = np.random.default_rng(seed)
    for variable in generator.variables:
        shape = variable.shape.as_list()
        if len(shape) == 4:
            value = rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))
            if "/flow_h" in variable.name:
                value = value * flow_scale
        elif "gamma" in variable.name:
            value = 1.0 + 0.1 * rng.normal(size=shape)
        else:
            value = 0.1 * rng.normal(size=shape)
        variable.assign(value.astype(np.float32))
