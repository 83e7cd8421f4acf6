"""GFLA checkpoint conversion: a state dict with every key and shape of GFLA's DeepFashion, Market
and ShapeNet generators (written from GFLA's module structure in numpy, tests/gfla_reference.py)
converts with no key missing or left over, and the converted GFLAGenerator computes what a numpy
reference of GFLA's PyTorch forward pass computes on the same weights; layer by layer too (conv,
transposed conv, local attention); refusals name the keys; the `tfrf convert gfla` command."""
import argparse
import json
import os

import numpy as np
import pytest

import gfla_reference as reference
import tfrf
from tfrf.cli import main as cli_main
from tfrf.commands.convert import run_gfla
from tfrf.models.gfla.blocks import transposed_conv_torch
from tfrf.models.gfla_convert import convert_gfla_state_dict, read_state_dict

# GFLA's settings: structure_nc, --kernel_size {attn_layer: k} (3 = H/8, 2 = H/4), ShapeNet model.
CASES = {
    "deepfashion": (18, {3: 3, 2: 5}, False),
    "market1501": (18, {2: 3}, False),
    "shapenet_chairs": (21, {3: 3, 2: 5}, True),
}
SIZE = 64  # 2 x 2 at the flow network's bottleneck: instance norm over fewer pixels is ill-conditioned


def state_for(preset, seed=0):
    structure_nc, kernel_sizes, view_synthesis = CASES[preset]
    shapes = reference.state_dict_shapes(structure_nc, kernel_sizes, view_synthesis)
    return reference.random_state_dict(shapes, seed, flow_scale=3.0)


def config_for(preset, **changes):
    return tfrf.ModelConfig.preset(preset, architecture="gfla", warp_backend="gather", image_height=SIZE,
                                   image_width=SIZE, **changes)


def inputs_for(preset, seed=1):
    """tfrf inputs (NHWC, K = 1) and the same in GFLA's layout (NCHW; ShapeNet poses as vectors)."""
    structure_nc, _, view_synthesis = CASES[preset]
    rng = np.random.default_rng(seed)
    image = rng.uniform(-1, 1, (1, SIZE, SIZE, 3)).astype(np.float32)
    if view_synthesis:
        one_hot = np.eye(structure_nc, dtype=np.float32)
        source_vector = (one_hot[3] + one_hot[19])[None]  # azimuth bin 3, elevation bin 1: [1, 21]
        target_vector = (one_hot[9] + one_hot[18])[None]
        source_map = np.tile(source_vector[:, None, None, :], (1, SIZE, SIZE, 1))
        target_map = np.tile(target_vector[:, None, None, :], (1, SIZE, SIZE, 1))
        gfla_poses = source_vector[:, :, None, None], target_vector[:, :, None, None]
    else:
        source_map = rng.uniform(0, 1, (1, SIZE, SIZE, structure_nc)).astype(np.float32)
        target_map = rng.uniform(0, 1, (1, SIZE, SIZE, structure_nc)).astype(np.float32)
        gfla_poses = source_map.transpose(0, 3, 1, 2), target_map.transpose(0, 3, 1, 2)
    inputs = {"source_images": image[:, None], "source_poses": source_map[:, None], "target_pose": target_map}
    return inputs, (image.transpose(0, 3, 1, 2),) + gfla_poses


def nhwc(array):
    return np.asarray(array).transpose(0, 2, 3, 1)


@pytest.fixture(scope="module")
def converted():
    """preset -> (state dict, converted generator); built once per preset."""
    cache = {}

    def get(preset):
        if preset not in cache:
            state = state_for(preset)
            cache[preset] = state, convert_gfla_state_dict(state, config_for(preset))
        return cache[preset]

    return get


def test_parameter_counts_equal_gflas(converted):
    """GFLA's counts (its `print_network`), of the key list and of GFLAGenerator at full width."""
    shapes = reference.state_dict_shapes(*CASES["deepfashion"])
    counts = [reference.parameter_count(shapes, prefix) for prefix in ("", "source.", "flow_net.", "target.")]
    assert counts == [14_047_395, 1_434_758, 6_608_212, 6_004_425]
    _, deepfashion = converted("deepfashion")
    assert [deepfashion.count_params(), deepfashion.source_extractor.count_params(),
            deepfashion.flow_extractor.count_params(), deepfashion.predictor.count_params()] == counts
    assert reference.parameter_count(reference.state_dict_shapes(*CASES["market1501"])) == 12_926_471
    _, market = converted("market1501")
    assert market.count_params() == 12_926_471
    assert len(market.trainable_variables) == len(market.variables)  # every weight trains
    _, shapenet = converted("shapenet_chairs")
    assert shapenet.count_params() == reference.parameter_count(reference.state_dict_shapes(*CASES["shapenet_chairs"]))


@pytest.mark.parametrize("preset", sorted(CASES))
def test_converted_generator_matches_numpy_gfla(preset, converted):
    state, generator = converted(preset)
    _, kernel_sizes, view_synthesis = CASES[preset]
    inputs, gfla_inputs = inputs_for(preset)
    image, flows, masks, coefficients = reference.forward(state, *gfla_inputs, kernel_sizes, view_synthesis)
    out = generator(inputs, return_intermediates=True)
    assert image.std() > 0.2  # an image-like output, not a constant
    np.testing.assert_allclose(out["image"].numpy(), nhwc(image), atol=2e-4, rtol=0)
    assert generator.levels == tuple(level for level, layer in (("h8", 3), ("h4", 2)) if layer in kernel_sizes)
    for level, flow, mask, attention in zip(generator.levels, flows, masks, coefficients):
        size = flow.shape[-1]
        # Flows of several pixels that read past the border (the clamped corners are exercised).
        columns = np.arange(size) + flow[:, 0]
        assert (columns < 0).any() and (columns > size - 1).any()
        np.testing.assert_allclose(out[level]["flows"].numpy()[:, 0], nhwc(flow), atol=1e-3, rtol=0)
        np.testing.assert_allclose(out[level]["masks"].numpy()[:, 0], nhwc(mask), atol=1e-4, rtol=0)
        np.testing.assert_allclose(out[level]["occlusions"].numpy()[:, 0], 1 - nhwc(mask), atol=1e-4, rtol=0)
        np.testing.assert_allclose(out[level]["local_attention"].numpy()[:, 0], nhwc(attention), atol=1e-4, rtol=0)


def test_converted_layers_match_pytorch_layers(converted):
    state, generator = converted("deepfashion")
    rng = np.random.default_rng(3)
    state64 = {key: value.astype(np.float64) for key, value in state.items()}

    # Convolutions (EncoderBlock: conv 4x4 stride 2 padding 1, conv 3x3 padding 1, instance norms).
    x = rng.normal(size=(2, 32, 8, 12))
    np.testing.assert_allclose(generator.flow_extractor.encoder[1](nhwc(x).astype(np.float32)).numpy(),
                               nhwc(reference.encoder_block(state64, "flow_net.encoder0", x)), atol=1e-4)
    # A bare transposed conv (k3, s2, p1, output_padding 1) and a whole ResBlockDecoder.
    decoder = generator.flow_extractor.decoders[1]
    x = rng.normal(size=(2, 256, 4, 6))
    hidden = rng.normal(size=(2, 128, 4, 6))
    np.testing.assert_allclose(
        transposed_conv_torch(decoder.conv_up, nhwc(hidden).astype(np.float32)).numpy(),
        nhwc(reference.conv_transpose2d(hidden, state64["flow_net.decoder1.model.5.weight"],
                                        state64["flow_net.decoder1.model.5.bias"])), atol=1e-4)
    np.testing.assert_allclose(decoder(nhwc(x).astype(np.float32)).numpy(),
                               nhwc(reference.decoder_block(state64, "flow_net.decoder1", x)), atol=1e-4)
    # The local attention at H/4 (k = 5) on a non-square map with flows pointing outside.
    source, target = rng.normal(size=(2, 128, 6, 9)), rng.normal(size=(2, 128, 6, 9))
    flow = rng.normal(size=(2, 2, 6, 9)) * 4
    expected, coefficients = reference.extractor_attention(state64, "target.attn1", source, target, flow, 5)
    output, tf_coefficients = generator.predictor.attention["h4"](
        *(nhwc(value).astype(np.float32) for value in (source, target, flow)), return_coefficients=True)
    np.testing.assert_allclose(output.numpy(), nhwc(expected), atol=1e-4)
    np.testing.assert_allclose(tf_coefficients.numpy(), nhwc(coefficients), atol=1e-5)


def test_refusals_name_the_keys(converted):
    state, generator = converted("market1501")
    before = [variable.numpy() for variable in generator.variables]
    missing = {key: value for key, value in state.items() if key != "target.attn1.fully_connect_layer.2.bias"}
    with pytest.raises(ValueError, match=r"missing keys: target\.attn1\.fully_connect_layer\.2\.bias"):
        generator.load_torch_weights(missing)
    extra = dict(state, **{"target.attn0.fully_connect_layer.0.weight": np.zeros((128, 512, 3, 3), np.float32)})
    with pytest.raises(ValueError, match=r"unused keys: target\.attn0\.fully_connect_layer\.0\.weight"):
        generator.load_torch_weights(extra)  # a DeepFashion key: Market has no H/8 attention
    wrong = dict(state, **{"flow_net.output2.weight": np.zeros((2, 64, 5, 5), np.float32)})
    with pytest.raises(ValueError, match=r"flow_net\.output2\.weight has shape \(2, 64, 5, 5\)"):
        generator.load_torch_weights(wrong)
    differing = dict(state, **{"flow_net.jump1.conv1.bias": state["flow_net.jump1.model.2.bias"] + 1})
    with pytest.raises(ValueError, match=r"duplicated Jump/Output convolutions differ at flow_net\.jump1\.conv1\.bias"):
        generator.load_torch_weights(differing)
    with pytest.raises(ValueError, match="pose transfer"):  # a DeepFashion state dict into Market
        generator.load_torch_weights(state_for("deepfashion"))
    for old, variable in zip(before, generator.variables):  # nothing was assigned
        np.testing.assert_array_equal(old, variable.numpy())


def test_state_dict_sources(tmp_path, converted):
    state, generator = converted("market1501")
    path = str(tmp_path / "latest_net_G.npz")
    np.savez(path, **state)
    assert sorted(read_state_dict(path)) == sorted(state)
    prefixed = read_state_dict({f"module.{key}": value for key, value in state.items()})  # nn.DataParallel
    assert sorted(prefixed) == sorted(state)
    with pytest.raises(FileNotFoundError, match="nonexistent.pth does not exist"):
        read_state_dict(str(tmp_path / "nonexistent.pth"))
    with pytest.raises(ValueError, match="expected a PyTorch state dict"):
        (tmp_path / "G.txt").write_text("x")
        read_state_dict(str(tmp_path / "G.txt"))
    try:
        import torch  # noqa: F401
    except ImportError:
        (tmp_path / "latest_net_G.pth").write_bytes(b"not read")
        with pytest.raises(ImportError, match="needs PyTorch"):
            read_state_dict(str(tmp_path / "latest_net_G.pth"))


def test_convert_command_writes_weights_and_config(tmp_path, converted):
    state, generator = converted("market1501")
    checkpoint = str(tmp_path / "latest_net_G.npz")
    np.savez(checkpoint, **state)
    config_path = tmp_path / "market.json"
    config_path.write_text(config_for("market1501").replace(architecture="rf").to_json())
    out = str(tmp_path / "out" / "gfla_market.weights.h5")
    assert cli_main(["convert", "gfla", "--checkpoint", checkpoint, "--config", str(config_path), "--out", out]) == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["gfla_market.config.json", "gfla_market.weights.h5"]
    with open(tmp_path / "out" / "gfla_market.config.json", encoding="utf-8") as stream:
        written = tfrf.ModelConfig.from_dict(json.load(stream))
    assert written == config_for("market1501")  # architecture switched to gfla
    loaded = tfrf.models.build_generator(written)
    loaded(loaded.dummy_inputs())
    loaded.load_weights(out)
    inputs, _ = inputs_for("market1501", seed=4)
    np.testing.assert_array_equal(loaded(inputs).numpy(), generator(inputs).numpy())
    arguments = argparse.Namespace(checkpoint=checkpoint, preset="market1501", config=None, out="x.h5")
    with pytest.raises(ValueError, match="must end in .weights.h5"):
        run_gfla(arguments)
    with pytest.raises(ValueError, match="give --preset NAME"):
        run_gfla(argparse.Namespace(checkpoint=checkpoint, preset=None, config=None, out=out))
