"""FID: Inception v3 in both modes against numpy references of its blocks and of the whole
network, the Fréchet distance against closed forms, streaming statistics against np.cov, the
statistics files and their content-keyed cache, and compute_metrics over every figure."""
import os

import numpy as np
import pytest
from PIL import Image

from tfrf.metrics import (FeatureStatistics, FIDInception, LPIPS, compute_metrics, fid_from_folders,
                          frechet_distance, image_metrics, load_statistics, masked_lpips, real_statistics,
                          save_statistics)
from tfrf.metrics import inception_blocks
from tfrf.metrics.torch_weights import assign_state

from inception_reference import (all_convs, bilinear_resize_nchw, block_a, block_c, block_e, random_state,
                                 reference_network, run_block)


# --- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def state():
    rng = np.random.default_rng(11)
    full = random_state(all_convs(), rng)
    # What the official files carry besides: the classifier, torchvision's auxiliary head, BN counters.
    full["fc.weight"] = rng.normal(size=(1008, 2048)).astype(np.float32)
    full["fc.bias"] = np.zeros(1008, np.float32)
    full["AuxLogits.conv0.conv.weight"] = np.zeros((128, 768, 1, 1), np.float32)
    full["Mixed_5b.branch1x1.bn.num_batches_tracked"] = np.array(0, np.int64)
    return full


@pytest.fixture(scope="module")
def standard(state):
    model = FIDInception("standard")
    model.load_torch_weights(state, cache_dir=False)
    return model


@pytest.fixture(scope="module")
def gfla(state):
    return FIDInception("gfla", weights=state, cache_dir=False)


@pytest.fixture(scope="module")
def small(state):
    """The standard network at 75x75 input: the same layers, ~16x cheaper than 299 (for tests of
    the statistics plumbing; `standard` and `gfla` cover 299)."""
    return FIDInception("standard", weights=state, cache_dir=False, input_size=75)


# --- blocks --------------------------------------------------------------------------------------
def _block_state(spec, prefix, rng):
    return random_state({f"{prefix}.{name}": value for name, value in spec.items()}, rng)


@pytest.mark.parametrize("pool, reference_pool", [("average_exclude_padding", "exclude_pad"),
                                                  ("average", "include_pad")])
def test_inception_a_and_c_pool_padding_against_numpy(pool, reference_pool):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 5, 6, 8)).astype(np.float32)
    for kind, layer, spec in (("A", inception_blocks.InceptionA(4, pool), block_a(8, 4)),
                              ("C", inception_blocks.InceptionC(3, pool), block_c(8, 3))):
        layer(x)
        name = "Mixed_5b" if kind == "A" else "Mixed_6b"
        block_state = _block_state(spec, name, rng)
        assign_state(block_state, layer.torch_plan(name), "block")
        expected = run_block(np.transpose(x, (0, 3, 1, 2)), block_state, name, kind, reference_pool, spec)
        other = run_block(np.transpose(x, (0, 3, 1, 2)), block_state, name, kind,
                          "include_pad" if reference_pool == "exclude_pad" else "exclude_pad", spec)
        got = layer(x).numpy()
        np.testing.assert_allclose(got, np.transpose(expected, (0, 2, 3, 1)), rtol=1e-4, atol=1e-5)
        # The two pools agree inside and differ on the border, in the pool branch only.
        difference = np.abs(np.transpose(other, (0, 2, 3, 1)) - got).max(axis=-1)[0]
        assert difference[1:-1, 1:-1].max() < 1e-4 and difference[0].max() > 1e-3


@pytest.mark.parametrize("pool, reference_pool", [("max", "max"), ("average_exclude_padding", "exclude_pad"),
                                                  ("average", "include_pad")])
def test_inception_e_pool_branch_against_numpy(pool, reference_pool):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1, 4, 4, 8)).astype(np.float32)
    layer = inception_blocks.InceptionE(pool)
    layer(x)
    spec = block_e(8)
    block_state = _block_state(spec, "Mixed_7c", rng)
    assign_state(block_state, layer.torch_plan("Mixed_7c"), "block")
    expected = run_block(np.transpose(x, (0, 3, 1, 2)), block_state, "Mixed_7c", "E", reference_pool, spec)
    np.testing.assert_allclose(layer(x).numpy(), np.transpose(expected, (0, 2, 3, 1)), rtol=1e-4, atol=1e-5)


def test_pool_helper_matches_pytorch_semantics_on_a_ramp():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    corner_include = (0 + 1 + 4 + 5) / 9.0  # zeros of the padding counted
    corner_exclude = (0 + 1 + 4 + 5) / 4.0
    assert inception_blocks.pool_3x3(x, "average").numpy()[0, 0, 0, 0] == pytest.approx(corner_include)
    assert inception_blocks.pool_3x3(x, "average_exclude_padding").numpy()[0, 0, 0, 0] == pytest.approx(corner_exclude)
    assert inception_blocks.pool_3x3(-x, "max").numpy()[0, 0, 0, 0] == 0.0  # padding never wins a max
    np.testing.assert_allclose(inception_blocks.pool_3x3(x, "average").numpy()[0, 1:3, 1:3, 0],
                               inception_blocks.pool_3x3(x, "average_exclude_padding").numpy()[0, 1:3, 1:3, 0])


# --- the whole network ---------------------------------------------------------------------------
def test_full_network_loads_every_key_and_matches_numpy_in_both_modes(standard, gfla, state):
    convs = all_convs()
    # Parameter count from the written-out architecture: conv weights + 4 BatchNorm vectors each.
    expected_count = sum(cin * cout * kh * kw + 4 * cout for cin, cout, (kh, kw), _, _ in convs.values())
    assert standard.count_params() == expected_count
    assert set(standard.torch_plan()) == {f"{name}.{suffix}" for name in convs for suffix in
                                          ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")}
    x = np.random.default_rng(5).uniform(-1, 1, (1, 75, 75, 3)).astype(np.float32)  # smallest valid input
    got = standard(x).numpy()
    np.testing.assert_allclose(got, reference_network(x, state, fid=True), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(gfla(x).numpy(), reference_network(x, state, fid=False), rtol=1e-3, atol=1e-4)


def test_features_preprocess_both_modes_and_differ(standard, gfla):
    rng = np.random.default_rng(6)
    images = rng.integers(0, 256, (2, 20, 12, 3), dtype=np.uint8)
    resized = bilinear_resize_nchw(np.transpose(images / 255.0, (0, 3, 1, 2)), 299)
    np.testing.assert_allclose(standard.preprocess(images).numpy(), np.transpose(2 * resized - 1, (0, 2, 3, 1)),
                               atol=1e-5)
    mean = np.array([0.485, 0.456, 0.406])[None, :, None, None]
    std = np.array([0.229, 0.224, 0.225])[None, :, None, None]
    np.testing.assert_allclose(gfla.preprocess(images).numpy(),
                               np.transpose(resized * (std / 0.5) + (mean - 0.5) / 0.5, (0, 2, 3, 1)), atol=1e-5)

    features = standard.features(images, batch_size=1)
    assert features.shape == (2, 2048) and features.dtype == np.float32 and np.isfinite(features).all()
    gfla_features = gfla.features(images)
    assert np.isfinite(gfla_features).all()
    assert np.abs(features - gfla_features).max() > 1e-3 * np.abs(features).max()
    with pytest.raises(ValueError, match=r"uint8 \[N, H, W, 3\]"):
        standard.features(images.astype(np.float32))


def test_load_refuses_missing_and_unused_keys_by_name(gfla, state):
    model = gfla  # a refused load assigns nothing, so the shared model stays as it was
    before = model(np.zeros((1, 75, 75, 3), np.float32)).numpy()
    partial = {key: value for key, value in state.items() if key != "Mixed_6e.branch7x7dbl_3.bn.running_var"}
    with pytest.raises(ValueError, match=r"missing keys: Mixed_6e\.branch7x7dbl_3\.bn\.running_var"):
        model.load_torch_weights(partial, cache_dir=False)
    with pytest.raises(ValueError, match=r"unused keys: Mixed_5b\.branch9x9\.conv\.weight"):
        model.load_torch_weights({**state, "Mixed_5b.branch9x9.conv.weight": np.zeros(1)}, cache_dir=False)
    np.testing.assert_array_equal(model(np.zeros((1, 75, 75, 3), np.float32)).numpy(), before)
    with pytest.raises(ValueError, match="unknown mode"):
        FIDInception("tf1")
    with pytest.raises(ValueError, match="input_size must be >= 75"):
        FIDInception("standard", input_size=64)


def test_converted_weights_are_cached_by_file_content(tmp_path, small, state):
    np.savez(tmp_path / "inception.npz", **state)
    images = np.random.default_rng(14).integers(0, 256, (1, 9, 7, 3), dtype=np.uint8)
    before = small.features(images)
    cache_dir = tmp_path / "cache"
    assert small.load_torch_weights(str(tmp_path / "inception.npz"), cache_dir=str(cache_dir)) is False
    (entry,) = os.listdir(cache_dir)
    assert entry.startswith("inception-standard-") and entry.endswith(".weights.h5")
    assert small.load_torch_weights(str(tmp_path / "inception.npz"), cache_dir=str(cache_dir)) is True
    np.testing.assert_array_equal(small.features(images), before)  # the cached file holds the same weights


# --- Fréchet distance and statistics --------------------------------------------------------------
def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(8)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    var1, var2 = rng.uniform(0.1, 2, 16), rng.uniform(0.1, 2, 16)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-10)
    # Commuting covariances Q D Q^T: Tr((S1 S2)^1/2) = sum sqrt(d1 d2).
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    sigma1, sigma2 = q @ np.diag(var1) @ q.T, q @ np.diag(var2) @ q.T
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(mu2, sigma2, mu1, sigma1) == pytest.approx(expected, rel=1e-8)
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(mu1, sigma1, mu2[:8], sigma2[:8, :8])
    with pytest.raises(ValueError, match=r"sigma \[D, D\]"):
        frechet_distance(mu1, sigma1[:8], mu2, sigma2)
    with pytest.raises(ValueError, match="imaginary component 1"):  # not a covariance: eigenvalue -1
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.diag([-1.0, 1.0]))


def test_frechet_distance_with_fewer_samples_than_dimensions():
    rng = np.random.default_rng(9)
    first, second = rng.normal(size=(10, 64)), rng.normal(0.3, 1.2, size=(12, 64))  # N < D: singular
    stats1 = (first.mean(0), np.cov(first, rowvar=False))
    stats2 = (second.mean(0), np.cov(second, rowvar=False))
    value = frechet_distance(*stats1, *stats2)
    # Independent route: Tr((S1 S2)^1/2) = Tr((S1^1/2 S2 S1^1/2)^1/2), a symmetric PSD root.
    eigenvalues, vectors = np.linalg.eigh(stats1[1])
    root1 = vectors @ np.diag(np.sqrt(np.clip(eigenvalues, 0, None))) @ vectors.T
    inner = np.linalg.eigvalsh(root1 @ stats2[1] @ root1)
    expected = (np.sum((stats1[0] - stats2[0]) ** 2) + np.trace(stats1[1]) + np.trace(stats2[1])
                - 2 * np.sum(np.sqrt(np.clip(inner, 0, None))))
    assert np.isfinite(value) and value == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(*stats2, *stats1) == pytest.approx(value, rel=1e-6)
    assert abs(frechet_distance(*stats1, *stats1)) < 1e-6 * np.trace(stats1[1])
    with pytest.raises(ValueError, match="non-finite"):
        frechet_distance(stats1[0], np.full((64, 64), np.nan), *stats2)


def test_streaming_statistics_equal_numpy_cov():
    rng = np.random.default_rng(10)
    features = rng.normal(1000.0, 0.01, size=(37, 6)) + rng.normal(size=(37, 6)) * 0.001
    statistics = FeatureStatistics()
    for rows in (slice(0, 5), slice(5, 18), slice(18, 18), slice(18, 37)):
        statistics.update(features[rows])
    mu, sigma = statistics.result()
    assert statistics.count == 37
    np.testing.assert_allclose(mu, features.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(features, rowvar=False), rtol=1e-7, atol=1e-16)
    with pytest.raises(ValueError, match=r"\[n, 6\]"):
        statistics.update(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="at least 2"):
        FeatureStatistics().result()


def test_statistics_files_round_trip(tmp_path):
    mu, sigma = np.arange(3.0), np.eye(3) * 2
    path = tmp_path / "stats" / "real.npz"
    save_statistics(str(path), mu, sigma)
    assert sorted(os.listdir(path.parent)) == ["real.npz"]  # no temporary left behind
    with np.load(path) as archive:  # the TTUR / pytorch-fid format
        assert sorted(archive.files) == ["mu", "sigma"]
    loaded_mu, loaded_sigma = load_statistics(str(path))
    np.testing.assert_array_equal(loaded_mu, mu)
    np.testing.assert_array_equal(loaded_sigma, sigma)
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        load_statistics(str(tmp_path / "absent.npz"))
    np.savez(tmp_path / "other.npz", mean=mu)
    with pytest.raises(ValueError, match="'mu' and 'sigma'"):
        load_statistics(str(tmp_path / "other.npz"))


def _write_images(folder, images):
    folder.mkdir(exist_ok=True)
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{index:03d}.png")


def test_real_statistics_cache_is_keyed_by_content(tmp_path, small):
    rng = np.random.default_rng(12)
    images = rng.integers(0, 256, (3, 16, 8, 3), dtype=np.uint8)
    folder = tmp_path / "real"
    _write_images(folder, images)
    cache_dir = tmp_path / "cache"
    mu, sigma = real_statistics(str(folder), small, cache_dir=str(cache_dir))
    features = small.features(images)
    np.testing.assert_allclose(mu, features.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sigma, np.cov(features.astype(np.float64), rowvar=False), rtol=1e-4, atol=1e-8)
    (entry,) = os.listdir(cache_dir)
    assert entry.startswith("fid-standard-") and entry.endswith(".npz")

    # A second call reads the cache: overwrite the entry and the overwritten values come back.
    save_statistics(str(cache_dir / entry), np.zeros(2048), np.eye(2048))
    cached_mu, _ = real_statistics(str(folder), small, cache_dir=str(cache_dir))
    np.testing.assert_array_equal(cached_mu, 0.0)

    # A changed folder (one image rewritten) has another key: fresh statistics, a second entry.
    _write_images(folder, images[::-1][:1])
    os.utime(folder / "000.png", ns=(1, 1))
    fresh_mu, _ = real_statistics(str(folder), small, cache_dir=str(cache_dir))
    expected = small.features(np.stack([images[2], images[1], images[2]]))
    np.testing.assert_allclose(fresh_mu, expected.mean(0), rtol=1e-5, atol=1e-6)
    assert len(os.listdir(cache_dir)) == 2

    # fid_from_folders: a set against itself is 0, against its statistics file too.
    save_statistics(str(tmp_path / "real.npz"), fresh_mu, _)
    assert abs(fid_from_folders(str(folder), str(tmp_path / "real.npz"), inception=small)) < 1e-3
    with pytest.raises(FileNotFoundError, match="missing"):
        fid_from_folders(str(tmp_path / "missing"), str(tmp_path / "real.npz"), inception=small)


def test_compute_metrics_combines_every_figure(small):
    rng = np.random.default_rng(13)
    target = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    generated = np.clip(target.astype(int) + rng.integers(-40, 40, target.shape), 0, 255).astype(np.uint8)
    keypoints = np.full((3, 18, 2), -1)
    keypoints[:, 1] = [8, 16]
    keypoints[:, 8] = [24, 12]
    lpips = LPIPS("alex")
    real = (rng.normal(size=2048) * 1e-3, np.eye(2048) * 1e-6)  # scalar covariance c I: closed form below
    result = compute_metrics(generated, target, keypoints, lpips=lpips, inception=small, real_stats=real,
                             batch_size=2)
    signed = lambda x: x.astype(np.float32) / 127.5 - 1  # noqa: E731
    per_image = image_metrics(signed(generated), signed(target))
    for name in ("l1", "psnr", "ssim"):
        assert result[name] == pytest.approx(float(np.mean(per_image[name])), rel=1e-5)
    assert result["lpips"] == pytest.approx(float(np.mean(lpips(signed(generated), signed(target)))), rel=1e-5)
    assert result["mask_lpips"] == pytest.approx(
        float(np.mean(masked_lpips(lpips, signed(generated), signed(target), keypoints))), rel=1e-5)
    features = small.features(generated).astype(np.float64)
    # Tr((S c I)^1/2) = sqrt(c) sum sqrt(lambda(S)); S = X^T X / (n - 1) shares its non-zero
    # eigenvalues with the 3x3 Gram matrix X X^T / (n - 1).
    centred = features - features.mean(0)
    gram_eigenvalues = np.clip(np.linalg.eigvalsh(centred @ centred.T / 2), 0, None)
    expected_fid = (np.sum((features.mean(0) - real[0]) ** 2) + np.trace(centred.T @ centred / 2) + 2048 * 1e-6
                    - 2 * np.sqrt(1e-6) * np.sum(np.sqrt(gram_eigenvalues)))
    assert result["fid"] == pytest.approx(expected_fid, rel=1e-4)
    assert result["examples"] == 3
    with pytest.raises(ValueError, match="'fid' needs `inception`"):
        compute_metrics(generated, target, metrics=("fid",))
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(generated, target, metrics=("is",))
    with pytest.raises(ValueError, match="uint8"):
        compute_metrics(signed(generated), target)
