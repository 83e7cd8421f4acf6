"""Mechanism metrics on hand-made cases (EPE of zero and true flows, AUROC, attention agreement,
coverage), on the renderer's ground truth, and the evaluation protocols' crop and resize."""
import itertools

import numpy as np
import pytest
from PIL import Image

from tfrf.data import synthetic
from tfrf.evaluation import mechanism, protocols


def _pairwise_auroc(scores, labels):
    positives = [s for s, label in zip(scores, labels) if label]
    negatives = [s for s, label in zip(scores, labels) if not label]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(positives, negatives))
    return wins / (len(positives) * len(negatives))


def test_auroc_against_hand_made_cases():
    assert mechanism.auroc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert mechanism.auroc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    assert mechanism.auroc([0.5, 0.5, 0.5, 0.5], [True, False, True, False]) == 0.5
    # 3 positives, 2 negatives: pairs (0.8 > 0.3, 0.8 > 0.6, 0.6 = 0.6 -> 1/2, 0.6 > 0.3, 0.2 < both) = 3.5 / 6.
    scores, labels = [0.8, 0.6, 0.2, 0.6, 0.3], [True, True, True, False, False]
    assert mechanism.auroc(scores, labels) == pytest.approx(3.5 / 6)
    assert mechanism.auroc([0.1, 0.2], [True, True]) is None
    rng = np.random.default_rng(0)
    scores = np.round(rng.uniform(size=300), 2)  # many ties
    labels = rng.uniform(size=300) < scores  # informative
    exact = mechanism.auroc(scores, labels)
    assert exact == pytest.approx(_pairwise_auroc(scores.tolist(), labels.tolist()), abs=1e-12)
    binned = mechanism.BinnedAUROC(bins=1000)
    for part in np.array_split(np.arange(300), 7):  # batches accumulate
        binned.update(scores[part], labels[part])
    # Scores on a 0.01 grid fall into distinct bins of 0.001: the histogram form is exact.
    assert binned.result() == pytest.approx(exact, abs=1e-12) and 0.6 < exact < 0.95


def test_end_point_error_of_zero_and_true_flow():
    truth = np.zeros((1, 2, 2, 2))
    truth[0, 0, 0] = [3.0, 4.0]  # |(3, 4)| = 5
    truth[0, 1, 1] = [-1.0, 0.0]  # 1
    truth[0, 0, 1] = [10.0, 10.0]  # invisible: not counted
    visible = np.array([[[True, False], [False, True]]])
    assert mechanism.end_point_errors(truth, truth, visible).tolist() == [0.0, 0.0]
    assert mechanism.end_point_errors(np.zeros_like(truth), truth, visible).mean() == 3.0  # (5 + 1) / 2


def test_attention_agreement_counts_only_pixels_some_sources_see():
    # B = 1, K = 2, 1 x 4 pixels.
    visible = np.array([[[[True, True, False, True]], [[False, True, False, False]]]])
    shown = np.array([[[True, True, True, False]]])
    attention = np.array([[[[0.9, 0.5, 0.5, 0.1]], [[0.1, 0.5, 0.5, 0.9]]]])
    # Pixel 0: only source 0 sees it, top is 0 -> agree; pixel 1: both see it (not counted);
    # pixel 2: none (not counted); pixel 3: not shown.
    assert mechanism.top_source_agreement(attention, visible, shown) == (1, 1)
    attention[0, 1, 0, 0] = 0.95  # now source 1, which does not see pixel 0, is on top
    assert mechanism.top_source_agreement(attention, visible, shown) == (0, 1)


def _hand_case(k=2, size=8, seed=0):
    rng = np.random.default_rng(seed)
    truth, intermediates = {}, {}
    for level, s in (("h8", size // 2), ("h4", size)):
        flow = rng.normal(0, 2, (1, k, s, s, 2))
        visible = rng.uniform(size=(1, k, s, s)) < 0.6
        shown = np.ones((1, s, s), bool)
        truth[level] = {"flow": flow, "visible": visible, "shown": shown}
        intermediates[level] = {"flows": flow.copy(), "residual_flows": np.zeros_like(flow),
                                "occlusions": (~visible)[..., None].astype(np.float32) * 0.8 + 0.1,
                                "attention": (visible / np.maximum(visible.sum(1, keepdims=True), 1))[..., None]}
    return truth, intermediates


def test_the_accumulator_on_a_perfect_and_on_a_zero_model():
    truth, perfect = _hand_case()
    accumulator = mechanism.MechanismAccumulator()
    accumulator.update(perfect, truth)
    result = accumulator.result()
    for level in ("h8", "h4"):
        assert result[f"epe_flow_{level}"] == 0.0 and result[f"epe_refined_{level}"] == 0.0
        expected_zero = np.linalg.norm(truth[level]["flow"], axis=-1)[truth[level]["visible"]].mean()
        assert result[f"epe_zero_{level}"] == pytest.approx(expected_zero)
        assert result[f"occlusion_auroc_{level}"] == 1.0
        assert result[f"attention_agreement_{level}"] == 1.0
        assert result[f"gain_flow_{level}"] == pytest.approx(1.0) and result[f"gain_refined_{level}"] == pytest.approx(1.0)
    assert "coverage_auroc" not in result
    # A model with zero base flow and a residual equal to the truth: the base's EPE is the zero
    # flow's, the refined one is exact; a constant occlusion map is chance.
    zero = {level: {**values, "flows": np.zeros_like(values["flows"]), "residual_flows": values["flows"],
                    "occlusions": np.zeros_like(values["occlusions"])} for level, values in perfect.items()}
    accumulator = mechanism.MechanismAccumulator()
    accumulator.update(zero, truth)
    result = accumulator.result()
    assert result["epe_flow_h4"] == pytest.approx(result["epe_zero_h4"]) and result["epe_refined_h4"] == 0.0
    assert result["gain_flow_h4"] == 0.0 and result["gain_refined_h4"] == pytest.approx(1.0)
    assert result["occlusion_auroc_h4"] == 0.5
    # K = 1: no attention choice.
    truth1, perfect1 = _hand_case(k=1)
    accumulator = mechanism.MechanismAccumulator()
    accumulator.update(perfect1, truth1)
    assert accumulator.result()["attention_agreement_h4"] is None


def test_coverage_auroc_when_the_generator_gives_coverage():
    truth, perfect = _hand_case()
    target = np.zeros((1, 4, 4, 3))
    generated = target.copy()
    generated[0, :2] = 0.5  # the top half is wrong (error 0.5 > 0.2)
    coverage = np.zeros((1, 4, 4, 3))
    coverage[..., 0] = 1.0  # the bottom half comes from source 0
    coverage[0, :2] = [0.1, 0.1, 0.8]  # the top half is mostly invented
    accumulator = mechanism.MechanismAccumulator()
    accumulator.update({**perfect, "coverage": coverage}, truth, generated, target)
    assert accumulator.result()["coverage_auroc"] == 1.0 and "coverage_auroc_object" not in accumulator.result()
    np.testing.assert_allclose(mechanism.low_coverage_scores(coverage)[0, :, 0], [0.8, 0.8, 0.0, 0.0])
    # The last row is background: invented too, but easy (no error). Over every pixel low coverage
    # now also marks 4 right pixels: the 8 wrong ones tie with them (1/2) and beat the 4 others,
    # (8 * 4 * 0.5 + 8 * 4) / (8 * 8) = 0.75; over the object (rows 0-2) it is still perfect.
    coverage[0, 3] = [0.1, 0.1, 0.8]
    shown = np.ones((1, 4, 4), bool)
    shown[0, 3] = False
    accumulator = mechanism.MechanismAccumulator()
    accumulator.update({**perfect, "coverage": coverage}, {**truth, "h": {"shown": shown}}, generated, target)
    result = accumulator.result()
    assert result["coverage_auroc"] == 0.75 and result["coverage_auroc_object"] == 1.0


def test_ground_truth_epe_known_values_on_the_renderer():
    truth = synthetic.ground_truth_levels("test", 0, [0, 3], 1, image_size=64)
    intermediates = {level: {"flows": truth[level]["flow"][None],
                             "residual_flows": np.zeros_like(truth[level]["flow"][None]),
                             "occlusions": (~truth[level]["visible"])[None, ..., None].astype(np.float32),
                             "attention": np.full(truth[level]["visible"][None, ..., None].shape, 0.5)}
                     for level in ("h8", "h4")}
    batch_truth = {level: {name: value[None] for name, value in truth[level].items()} for level in ("h8", "h4")}
    accumulator = mechanism.MechanismAccumulator()
    accumulator.update(intermediates, batch_truth)
    result = accumulator.result()
    assert result["epe_flow_h4"] == 0.0 and result["epe_flow_h8"] == 0.0
    # 20 and 60 degrees of azimuth: the zero flow is off by about a pixel at H/8 and more at H/4.
    flow, visible = truth["h4"]["flow"], truth["h4"]["visible"]
    assert result["epe_zero_h4"] == pytest.approx(np.linalg.norm(flow, axis=-1)[visible].mean())
    assert 0.3 < result["epe_zero_h8"] < result["epe_zero_h4"] < 8.0
    assert result["occlusion_auroc_h4"] == 1.0


def test_pt176_crops_the_centre_of_a_256_output_and_resizes_others_bicubic():
    image = np.zeros((1, 256, 256, 3), np.uint8)
    image[0, :, :, 0] = np.arange(256)[None, :]  # red = column
    image[0, :, :, 1] = np.arange(256)[:, None]  # green = row
    protocol = protocols.get("pt176")
    cropped = protocol.apply(image)
    assert cropped.shape == (1, 256, 176, 3)
    assert cropped[0, 0, 0, 0] == 40 and cropped[0, 0, -1, 0] == 215  # columns 40 ... 215
    np.testing.assert_array_equal(cropped[0, :, 0, 1], np.arange(256))
    # A 64 x 64 output: white in columns 10 ... 53, black outside. Bicubic to 256 x 256 (PIL),
    # then the crop: the black bands (columns < 40 and >= 216 at 256) are cut away.
    small = np.zeros((1, 64, 64, 3), np.uint8)
    small[:, :, 10:54] = 255
    scored = protocol.apply(small)
    expected = np.asarray(Image.fromarray(small[0]).resize((256, 256), Image.BICUBIC))[:, 40:216]
    np.testing.assert_array_equal(scored[0], expected)
    assert scored.shape == (1, 256, 176, 3) and (scored[0, :, 4:-4] == 255).all()
    assert protocol.scored_size((64, 64)) == (256, 176)
    gfla = protocols.get("gfla")
    assert gfla.scored_size((256, 256)) == (256, 256) and gfla.apply(image) is not None
    np.testing.assert_array_equal(gfla.apply(image), image)
    with pytest.raises(ValueError, match="unknown protocol"):
        protocols.get("pt256")


def test_protocol_cards_name_every_choice():
    card = protocols.card(protocols.get("pt176"), model_size=(256, 256), stored_size=(256, 176), jpeg=False,
                          metrics=["fid", "lpips", "ssim"], fid_mode="standard", inception_input_size=299,
                          real_stats=None, scored_targets={"1": 10})
    assert card["image_size"] == [256, 176] and "176-wide centre crop" in card["crop"]
    assert card["generated_format"] == "PNG" and card["lpips"] == {"version": "0.1", "net": "alex"}
    assert card["inception"]["weights"] == "pt_inception-2015-12-05-6726825d.pth"
    assert card["real_set"]["count"] == {"1": 10} and "256 x 176" in card["real_set"]["expected"]
    assert "11x11" in card["ssim"]["window"] and "bilinear" in card["resize"]["data_to_model"]
    gfla = protocols.card(protocols.get("gfla"), model_size=(64, 64), stored_size=(64, 64), jpeg=True,
                          metrics=["l1"], fid_mode="gfla", inception_input_size=None, real_stats=None,
                          scored_targets={"1": 3})
    assert gfla["crop"].startswith("none") and gfla["generated_format"].startswith("JPEG")
    assert gfla["inception"] is None and gfla["resize"]["data_to_model"] == "none"


def test_the_flow_gain_tells_a_shrunk_flow_from_a_wrong_one():
    """gain = sum(f . g) / sum(|g|^2) over visible pairs: a flow at 40 % of the truth has gain 0.4;
    one turned by 90 degrees has gain 0; pixels the
    source does not see do not count."""
    truth = np.array([[3.0, 4.0], [0.0, 2.0], [100.0, 0.0]])  # the last one is not visible
    visible = np.array([True, True, False])
    dot, norm = mechanism.flow_gain_terms(0.4 * truth, truth, visible)
    assert norm == pytest.approx(25.0 + 4.0) and dot / norm == pytest.approx(0.4)
    turned = np.stack([-truth[:, 1], truth[:, 0]], -1)
    dot, norm = mechanism.flow_gain_terms(turned, truth, visible)
    assert dot == 0.0
    # Accumulated over batches, pixels weighted by |g|^2: a shrunk base flow, a residual that
    # brings it to the truth.
    truth_case, perfect = _hand_case()
    shrunk = {level: {**values, "flows": 0.5 * values["flows"], "residual_flows": 0.5 * values["flows"]}
              for level, values in perfect.items()}
    accumulator = mechanism.MechanismAccumulator()
    for _ in range(2):
        accumulator.update(shrunk, truth_case)
    result = accumulator.result()
    assert result["gain_flow_h4"] == pytest.approx(0.5) and result["gain_refined_h4"] == pytest.approx(1.0)
    assert result["gain_flow_h8"] == pytest.approx(0.5)
