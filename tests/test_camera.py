"""6-DOF camera poses: matrix <-> vector round trips, the Euler convention, the camera6 map."""
import numpy as np
import pytest

from tfrf import pose as pose_lib
from tfrf.pose import camera


def _random_poses(count, seed=0, max_pitch=1.5):
    rng = np.random.default_rng(seed)
    angles = np.stack(
        [rng.uniform(-np.pi, np.pi, count), rng.uniform(-max_pitch, max_pitch, count), rng.uniform(-np.pi, np.pi, count)],
        axis=-1,
    )
    return np.concatenate([rng.normal(scale=50.0, size=(count, 3)), angles], axis=-1)


def test_matrix_to_pose6_and_back_round_trip_within_1e6():
    poses = _random_poses(2000)
    matrices = camera.pose6_to_matrix(poses)
    assert matrices.shape == (2000, 3, 4)
    np.testing.assert_allclose(camera.matrix_to_pose6(matrices), poses, atol=1e-6, rtol=0)
    np.testing.assert_allclose(camera.pose6_to_matrix(camera.matrix_to_pose6(matrices)), matrices, atol=1e-6, rtol=0)


def test_rotation_blocks_are_proper_rotations():
    rotations = camera.pose6_to_matrix(_random_poses(100, seed=1))[..., :3]
    np.testing.assert_allclose(rotations @ np.swapaxes(rotations, -1, -2), np.broadcast_to(np.eye(3), (100, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-12)


def test_euler_convention_is_extrinsic_xyz():
    # R = Rz(rz) Ry(ry) Rx(rx): a pure rz rotates the x axis towards y.
    matrix = camera.pose6_to_matrix([1.0, 2.0, 3.0, 0.0, 0.0, np.pi / 2])
    np.testing.assert_allclose(matrix[:, :3] @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(matrix[:, 3], [1.0, 2.0, 3.0])
    # rx is applied first, then rz: x stays x under Rx, then goes to y.
    rx, rz = 0.3, np.pi / 2
    matrix = camera.pose6_to_matrix([0, 0, 0, rx, 0.0, rz])
    np.testing.assert_allclose(matrix[:, :3] @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(matrix[:, :3] @ [0.0, 0.0, 1.0], [np.sin(rx), 0.0, np.cos(rx)], atol=1e-12)


@pytest.mark.parametrize("pitch", [np.pi / 2, -np.pi / 2])
def test_gimbal_lock_returns_an_equivalent_rotation(pitch):
    matrix = camera.pose6_to_matrix([0.1, 0.2, 0.3, 0.4, pitch, 0.7])
    pose = camera.matrix_to_pose6(matrix)
    assert pose[5] == 0.0
    np.testing.assert_allclose(camera.pose6_to_matrix(pose), matrix, atol=1e-9)


def test_homogeneous_4x4_matrices_are_accepted():
    matrix = camera.pose6_to_matrix(_random_poses(1, seed=2)[0])
    homogeneous = np.vstack([matrix, [0, 0, 0, 1]])
    np.testing.assert_allclose(camera.matrix_to_pose6(homogeneous), camera.matrix_to_pose6(matrix))


def test_bad_shapes_and_non_rotations_get_clear_errors():
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, 4\]"):
        camera.matrix_to_pose6(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="determinant"):
        camera.matrix_to_pose6(np.hstack([2.0 * np.eye(3), np.zeros((3, 1))]))
    with pytest.raises(ValueError, match=r"\[\.\.\., 6\]"):
        camera.pose6_to_matrix(np.zeros(5))


def test_encode_camera_broadcasts_the_vector_without_normalisation():
    pose = np.array([10.5, -2.0, 300.0, 0.1, -0.2, 3.0], np.float32)
    encoded = pose_lib.encoder("camera6")(pose, 4, 5).numpy()
    assert encoded.shape == (4, 5, 6) and encoded.dtype == np.float32
    np.testing.assert_array_equal(encoded, np.broadcast_to(pose, (4, 5, 6)))
    batched = camera.encode_camera(np.stack([pose, 2 * pose]), 3, 2).numpy()
    assert batched.shape == (2, 3, 2, 6)
    np.testing.assert_array_equal(batched[1, 2, 1], 2 * pose)
    with pytest.raises(ValueError, match=r"\[\.\.\., 6\]"):
        camera.encode_camera(np.zeros(5), 2, 2)
