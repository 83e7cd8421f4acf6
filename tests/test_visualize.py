"""Figures: flow colour wheel, pose drawing, gallery and internals layout, atomic PNG."""
import numpy as np
import pytest
from PIL import Image

from tfrf import visualize


def test_flow_colours_follow_the_wheel():
    flow = np.zeros((1, 4, 2), np.float32)
    flow[0, 1] = (1.0, 0.0)   # +x: red
    flow[0, 2] = (0.0, 1.0)   # +y: hue 90 degrees
    flow[0, 3] = (0.5, 0.0)   # half length: half saturation
    colours = visualize.flow_to_color(flow).astype(int)
    np.testing.assert_array_equal(colours[0, 0], [255, 255, 255])  # no motion: white
    np.testing.assert_array_equal(colours[0, 1], [255, 0, 0])
    np.testing.assert_array_equal(colours[0, 2], [128, 255, 0])
    np.testing.assert_array_equal(colours[0, 3], [255, 128, 128])
    with pytest.raises(ValueError, match=r"\[h, w, 2\]"):
        visualize.flow_to_color(np.zeros((4, 4, 3)))


def _batch(batch=3, k=2, size=16, channels=21):
    rng = np.random.default_rng(0)
    poses = np.zeros((batch, size, size, channels), np.float32)
    poses[..., 4] = 1.0
    poses[..., 19] = 1.0
    return {"source_images": rng.uniform(-1, 1, (batch, k, size, size, 3)).astype(np.float32),
            "source_poses": np.zeros((batch, k, size, size, channels), np.float32),
            "target_pose": poses, "target_image": rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)}


def test_gallery_layout_holds_the_images():
    examples = _batch()
    generated = np.full((3, 16, 16, 3), -1.0, np.float32)
    figure = visualize.gallery(examples, generated, scale=2)
    label = 14
    assert figure.shape == (label + 3 * 32, 5 * 32, 3) and figure.dtype == np.uint8
    # Row 1, column 0 is source 0 of example 1, upscaled 2x; column 3 the (black) generated.
    tile = figure[label + 32:label + 64, 0:32]
    np.testing.assert_array_equal(tile[::2, ::2], visualize.to_uint8(examples["source_images"][1, 0]))
    assert (figure[label:label + 32, 3 * 32:4 * 32] == 0).all()
    np.testing.assert_array_equal(figure[label:label + 32:2, 4 * 32:5 * 32:2],
                                  visualize.to_uint8(examples["target_image"][0]))
    with pytest.raises(ValueError, match="generated must be"):
        visualize.gallery(examples, generated[:2])


def test_view_pose_is_drawn_as_a_dial():
    image = visualize.pose_to_image(_batch(size=64)["target_pose"][0])
    red = (image[..., 0] > 150) & (image[..., 1] < 80)
    assert red.sum() > 20  # the needle


def test_internals_shows_every_map():
    examples = _batch(batch=2, k=2, size=32)
    outputs = {"image": np.zeros((2, 32, 32, 3), np.float32)}
    for level, size in (("h8", 4), ("h4", 8)):
        outputs[level] = {"flows": np.ones((2, 2, size, size, 2), np.float32),
                          "occlusions": np.full((2, 2, size, size, 1), 1.0, np.float32),
                          "attention": np.full((2, 2, size, size, 1), 0.5, np.float32)}
    figure = visualize.internals(examples, outputs, scale=1)
    # 2 examples x 2 sources, no blank band; source + 6 maps + generated + truth; then the key.
    grid_height = 14 + 4 * 32
    assert figure.shape[1:] == (9 * 32, 3) and figure.shape[0] > grid_height + 32
    assert (figure[14:46, 2 * 32:3 * 32] == 255).all()       # occlusion 1 -> white
    assert (np.abs(figure[14:46, 3 * 32:4 * 32].astype(int) - 128) <= 1).all()  # attention 0.5 -> grey
    assert not (figure[14:grid_height, :32] == 255).all(axis=(1, 2)).any()  # every row shows a source
    key = figure[grid_height:]
    np.testing.assert_array_equal(key[4:36, 4:36], visualize.color_wheel(32))
    assert (key[:, 40:] < 128).any()  # the key's text


def test_color_wheel_directions():
    wheel = visualize.color_wheel(33).astype(int)
    right, down, centre = wheel[16, 31], wheel[31, 16], wheel[16, 16]
    assert right[0] > 200 and right[1] < 60 and right[2] < 60  # +x: red
    assert (centre > 250).all()  # no motion: white
    assert 100 < down[0] < 170 and down[1] > 200 and down[2] < 60  # +y: yellow-green (hue a quarter turn)
    assert (wheel[0, 0] == 255).all()  # outside the disc


def test_save_png_round_trip(tmp_path):
    image = (np.arange(8 * 8 * 3) % 256).astype(np.uint8).reshape(8, 8, 3)
    path = tmp_path / "out" / "figure.png"
    visualize.save_png(str(path), image)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
    assert [p.name for p in path.parent.iterdir()] == ["figure.png"]
    with pytest.raises(ValueError, match="uint8"):
        visualize.save_png(str(path), image.astype(np.float32))
