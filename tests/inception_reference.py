"""An independent numpy Inception v3 for the FID tests: the architecture written out from
torchvision's `inception.py` (conv name -> in, out, kernel, stride, padding), random state dicts
under its key names, and a float64 NCHW forward with PyTorch semantics (zero-padded convolutions,
BatchNorm eps 0.001, `avg_pool2d` with and without `count_include_pad`, padded max pools,
`F.interpolate(mode="bilinear", align_corners=False)`)."""
import numpy as np

from helpers import numpy_conv2d


# Conv name -> (in, out, (kh, kw), stride, padding), block by block.
def block_a(cin, pool_features):
    return {"branch1x1": (cin, 64, (1, 1), 1, (0, 0)), "branch5x5_1": (cin, 48, (1, 1), 1, (0, 0)),
            "branch5x5_2": (48, 64, (5, 5), 1, (2, 2)), "branch3x3dbl_1": (cin, 64, (1, 1), 1, (0, 0)),
            "branch3x3dbl_2": (64, 96, (3, 3), 1, (1, 1)), "branch3x3dbl_3": (96, 96, (3, 3), 1, (1, 1)),
            "branch_pool": (cin, pool_features, (1, 1), 1, (0, 0))}


def block_b(cin):
    return {"branch3x3": (cin, 384, (3, 3), 2, (0, 0)), "branch3x3dbl_1": (cin, 64, (1, 1), 1, (0, 0)),
            "branch3x3dbl_2": (64, 96, (3, 3), 1, (1, 1)), "branch3x3dbl_3": (96, 96, (3, 3), 2, (0, 0))}


def block_c(cin, c7):
    return {"branch1x1": (cin, 192, (1, 1), 1, (0, 0)), "branch7x7_1": (cin, c7, (1, 1), 1, (0, 0)),
            "branch7x7_2": (c7, c7, (1, 7), 1, (0, 3)), "branch7x7_3": (c7, 192, (7, 1), 1, (3, 0)),
            "branch7x7dbl_1": (cin, c7, (1, 1), 1, (0, 0)), "branch7x7dbl_2": (c7, c7, (7, 1), 1, (3, 0)),
            "branch7x7dbl_3": (c7, c7, (1, 7), 1, (0, 3)), "branch7x7dbl_4": (c7, c7, (7, 1), 1, (3, 0)),
            "branch7x7dbl_5": (c7, 192, (1, 7), 1, (0, 3)), "branch_pool": (cin, 192, (1, 1), 1, (0, 0))}


def block_d(cin):
    return {"branch3x3_1": (cin, 192, (1, 1), 1, (0, 0)), "branch3x3_2": (192, 320, (3, 3), 2, (0, 0)),
            "branch7x7x3_1": (cin, 192, (1, 1), 1, (0, 0)), "branch7x7x3_2": (192, 192, (1, 7), 1, (0, 3)),
            "branch7x7x3_3": (192, 192, (7, 1), 1, (3, 0)), "branch7x7x3_4": (192, 192, (3, 3), 2, (0, 0))}


def block_e(cin):
    return {"branch1x1": (cin, 320, (1, 1), 1, (0, 0)), "branch3x3_1": (cin, 384, (1, 1), 1, (0, 0)),
            "branch3x3_2a": (384, 384, (1, 3), 1, (0, 1)), "branch3x3_2b": (384, 384, (3, 1), 1, (1, 0)),
            "branch3x3dbl_1": (cin, 448, (1, 1), 1, (0, 0)), "branch3x3dbl_2": (448, 384, (3, 3), 1, (1, 1)),
            "branch3x3dbl_3a": (384, 384, (1, 3), 1, (0, 1)), "branch3x3dbl_3b": (384, 384, (3, 1), 1, (1, 0)),
            "branch_pool": (cin, 192, (1, 1), 1, (0, 0))}


STEM = {"Conv2d_1a_3x3": (3, 32, (3, 3), 2, (0, 0)), "Conv2d_2a_3x3": (32, 32, (3, 3), 1, (0, 0)),
        "Conv2d_2b_3x3": (32, 64, (3, 3), 1, (1, 1)), "Conv2d_3b_1x1": (64, 80, (1, 1), 1, (0, 0)),
        "Conv2d_4a_3x3": (80, 192, (3, 3), 1, (0, 0))}
MIXED = {"Mixed_5b": block_a(192, 32), "Mixed_5c": block_a(256, 64), "Mixed_5d": block_a(288, 64),
         "Mixed_6a": block_b(288), "Mixed_6b": block_c(768, 128), "Mixed_6c": block_c(768, 160),
         "Mixed_6d": block_c(768, 160), "Mixed_6e": block_c(768, 192), "Mixed_7a": block_d(768),
         "Mixed_7b": block_e(1280), "Mixed_7c": block_e(2048)}


def all_convs():
    convs = dict(STEM)
    for block, branches in MIXED.items():
        convs.update({f"{block}.{name}": spec for name, spec in branches.items()})
    return convs


def random_state(convs, rng):
    """PyTorch BasicConv2d keys for each conv: conv.weight (O, I, kh, kw) and the BatchNorm tensors."""
    state = {}
    for name, (cin, cout, (kh, kw), _, _) in convs.items():
        state[f"{name}.conv.weight"] = (rng.normal(size=(cout, cin, kh, kw)) * np.sqrt(2.0 / (cin * kh * kw))).astype(np.float32)
        state[f"{name}.bn.weight"] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
        state[f"{name}.bn.bias"] = rng.normal(0, 0.1, cout).astype(np.float32)
        state[f"{name}.bn.running_mean"] = rng.normal(0, 0.1, cout).astype(np.float32)
        state[f"{name}.bn.running_var"] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
    return state


# --- numpy reference (NCHW, float64, PyTorch semantics) ------------------------------------------
def basic_conv(x, state, name, spec):
    _, _, _, stride, padding = spec
    y = numpy_conv2d(x, state[f"{name}.conv.weight"], stride, padding)
    bn = {key: state[f"{name}.bn.{key}"].astype(np.float64)[None, :, None, None]
          for key in ("weight", "bias", "running_mean", "running_var")}
    y = (y - bn["running_mean"]) / np.sqrt(bn["running_var"] + 0.001) * bn["weight"] + bn["bias"]
    return np.maximum(y, 0)


def pool3x3(x, kind):
    """avg_pool2d(3, 1, 1, count_include_pad=...) or max_pool2d(3, 1, 1), PyTorch semantics."""
    height, width = x.shape[2:]
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf if kind == "max" else 0.0)
    valid = np.pad(np.ones((height, width)), 1)
    total = np.zeros_like(x) if kind != "max" else np.full_like(x, -np.inf)
    count = np.zeros((height, width))
    for u in range(3):
        for v in range(3):
            window = padded[:, :, u:u + height, v:v + width]
            total = np.maximum(total, window) if kind == "max" else total + window
            count += valid[u:u + height, v:v + width]
    if kind == "max":
        return total
    return total / (9.0 if kind == "include_pad" else count)


def max_pool_s2(x):
    out_h, out_w = (x.shape[2] - 3) // 2 + 1, (x.shape[3] - 3) // 2 + 1
    out = np.full(x.shape[:2] + (out_h, out_w), -np.inf)
    for u in range(3):
        for v in range(3):
            out = np.maximum(out, x[:, :, u:u + 2 * (out_h - 1) + 1:2, v:v + 2 * (out_w - 1) + 1:2])
    return out


def run_block(x, state, prefix, kind, pool, spec=None):
    spec = MIXED[prefix] if spec is None else spec
    c = lambda h, name: basic_conv(h, state, f"{prefix}.{name}", spec[name])  # noqa: E731
    if kind == "A":
        return np.concatenate([c(x, "branch1x1"), c(c(x, "branch5x5_1"), "branch5x5_2"),
                               c(c(c(x, "branch3x3dbl_1"), "branch3x3dbl_2"), "branch3x3dbl_3"),
                               c(pool3x3(x, pool), "branch_pool")], axis=1)
    if kind == "B":
        return np.concatenate([c(x, "branch3x3"), c(c(c(x, "branch3x3dbl_1"), "branch3x3dbl_2"), "branch3x3dbl_3"),
                               max_pool_s2(x)], axis=1)
    if kind == "C":
        seven = c(c(c(x, "branch7x7_1"), "branch7x7_2"), "branch7x7_3")
        double = x
        for name in ("branch7x7dbl_1", "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5"):
            double = c(double, name)
        return np.concatenate([c(x, "branch1x1"), seven, double, c(pool3x3(x, pool), "branch_pool")], axis=1)
    if kind == "D":
        seven = x
        for name in ("branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"):
            seven = c(seven, name)
        return np.concatenate([c(c(x, "branch3x3_1"), "branch3x3_2"), seven, max_pool_s2(x)], axis=1)
    three = c(x, "branch3x3_1")
    double = c(c(x, "branch3x3dbl_1"), "branch3x3dbl_2")
    return np.concatenate([c(x, "branch1x1"), c(three, "branch3x3_2a"), c(three, "branch3x3_2b"),
                           c(double, "branch3x3dbl_3a"), c(double, "branch3x3dbl_3b"),
                           c(pool3x3(x, pool), "branch_pool")], axis=1)


def reference_network(x_nhwc, state, fid):
    """pytorch-fid's InceptionV3 blocks 0-3 (fid=True: FID blocks) on preprocessed NHWC input."""
    h = np.transpose(x_nhwc.astype(np.float64), (0, 3, 1, 2))
    for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"):
        h = basic_conv(h, state, name, STEM[name])
    h = max_pool_s2(h)
    for name in ("Conv2d_3b_1x1", "Conv2d_4a_3x3"):
        h = basic_conv(h, state, name, STEM[name])
    h = max_pool_s2(h)
    average = "exclude_pad" if fid else "include_pad"
    kinds = {"Mixed_5b": "A", "Mixed_5c": "A", "Mixed_5d": "A", "Mixed_6a": "B", "Mixed_6b": "C", "Mixed_6c": "C",
             "Mixed_6d": "C", "Mixed_6e": "C", "Mixed_7a": "D", "Mixed_7b": "E", "Mixed_7c": "E"}
    for name, kind in kinds.items():
        pool = "max" if (fid and name == "Mixed_7c") else average
        h = run_block(h, state, name, kind, pool)
    return h.mean(axis=(2, 3))


def bilinear_resize_nchw(x, size):
    """F.interpolate(mode='bilinear', align_corners=False): half-pixel centres, edges clamped."""
    def axis_weights(in_size):
        scale = in_size / size
        source = np.maximum((np.arange(size) + 0.5) * scale - 0.5, 0.0)
        low = np.floor(source).astype(int)
        high = np.minimum(low + 1, in_size - 1)
        return low, high, source - low

    low_y, high_y, wy = axis_weights(x.shape[2])
    low_x, high_x, wx = axis_weights(x.shape[3])
    rows = x[:, :, low_y] * (1 - wy)[None, None, :, None] + x[:, :, high_y] * wy[None, None, :, None]
    return rows[:, :, :, low_x] * (1 - wx) + rows[:, :, :, high_x] * wx
