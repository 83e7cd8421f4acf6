"""TF-Serving's version policy in the local server: the highest *loadable* version is served.

Faults found by probing the server: a broken version used to block every model (refresh raised on the
first failure), stop the start-up although an older version was valid, and be retried every
second forever; a deleted version kept being served, a re-exported one was never picked up, and
version folders were 0700.
"""
import logging
import os
import shutil
import stat

import numpy as np
import pytest

from tfrf.io import atomic_directory
from tfrf.serving import Client, LocalModelServer, ModelNotFoundError
from tfrf.serving.repository import fingerprint

from helpers import make_inputs
from serving_helpers import exported, install, serve_process


def corrupt_versions(base, good_version):
    """Copies of `base/good_version` broken three ways, as versions good+1 .. good+3."""
    good = os.path.join(base, str(good_version))
    unparsable, no_variables, empty = (os.path.join(base, str(good_version + step)) for step in (1, 2, 3))
    shutil.copytree(good, unparsable)
    with open(os.path.join(unparsable, "saved_model.pb"), "wb") as stream:
        stream.write(b"not a protocol buffer")
    shutil.copytree(good, no_variables)
    shutil.rmtree(os.path.join(no_variables, "variables"))
    os.makedirs(empty)
    return {good_version + 1: "ValueError: cannot parse", good_version + 2: "variables",
            good_version + 3: "holds no saved_model.pb"}


def load_warnings(caplog):
    return [record.getMessage() for record in caplog.records
            if record.name == "tfrf.serving" and "does not load" in record.getMessage()]


def assert_serves(address, generator, seed):
    inputs = make_inputs(1, 2, seed=seed)
    with Client(address, "face", timeout=60) as client:
        np.testing.assert_allclose(client.generate(**inputs), generator(inputs).numpy(), atol=1e-4, rtol=0)


def settled_refresh(repository):
    """A refresh once just-copied files have settled: the first look records a new version's files
    (a version is loaded only once they stop changing), the second finds them unchanged."""
    repository.refresh()
    return repository.refresh()


@pytest.mark.slow
def test_highest_loadable_version_is_served_and_broken_ones_block_nothing(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tfrf.serving")
    models = tmp_path / "models"
    face_v1 = install(1, models / "face")
    install(1, models / "chairs")  # chairs v1: face's weights
    reasons = corrupt_versions(str(models / "face"), 1)
    with LocalModelServer(str(models), port=0, poll_seconds=0) as server:  # start-up not blocked (fault 4)
        repository = server.repository
        assert repository.served() == {"chairs": 1, "face": 1}
        warnings = load_warnings(caplog)
        assert len(warnings) == 3
        for version, reason in reasons.items():
            assert any(f"model face version {version} does not load" in line and reason in line for line in warnings), \
                (version, warnings)
        assert_serves(server.address, face_v1, seed=1)
        attempts = server.counters["load_attempts"]
        for _ in range(3):  # unchanged failures are not retried (fault 5): no load, no log line
            assert repository.refresh() == {"chairs": 1, "face": 1}
        assert server.counters["load_attempts"] == attempts and len(load_warnings(caplog)) == 3

        chairs_v2 = install(2, models / "chairs")  # another model's new version (fault 3)
        assert settled_refresh(repository) == {"chairs": 2, "face": 1}
        with Client(server.address, "chairs", timeout=60) as client:
            inputs = make_inputs(1, 1, seed=2)
            np.testing.assert_allclose(client.generate(**inputs), chairs_v2(inputs).numpy(), atol=1e-4, rtol=0)
        assert np.abs(face_v1(inputs).numpy() - chairs_v2(inputs).numpy()).max() > 1e-2  # it is another model

        empty = str(models / "face" / "4")  # the empty version gets its files: tried again, served
        os.rmdir(empty)
        shutil.copytree(str(models / "face" / "1"), empty)
        assert settled_refresh(repository) == {"chairs": 2, "face": 4}
        assert server.counters["load_attempts"] == attempts + 2
        assert_serves(server.address, face_v1, seed=3)

        shutil.rmtree(empty)  # deleting the served version falls back to the next loadable one
        assert repository.refresh() == {"chairs": 2, "face": 1}
        assert_serves(server.address, face_v1, seed=4)

        shutil.rmtree(str(models / "face" / "1"))  # version 1 again with other weights (chairs v2's): picked up
        shutil.copytree(str(models / "chairs" / "2"), str(models / "face" / "1"))
        assert settled_refresh(repository) == {"chairs": 2, "face": 1}
        assert_serves(server.address, chairs_v2, seed=5)

        for version in (1, 2, 3):  # no loadable version left: face is not served, chairs is
            shutil.rmtree(str(models / "face" / str(version)))
        assert repository.refresh() == {"chairs": 2}
        with Client(server.address, "face", timeout=30) as client:
            with pytest.raises(ModelNotFoundError, match=r"Latest\(face\) \(no version of it loads\)"):
                client.metadata()


@pytest.mark.slow
def test_start_fails_only_when_no_model_loads(tmp_path):
    base = tmp_path / "models" / "face"
    install(1, base)
    corrupt_versions(str(base), 1)
    shutil.rmtree(str(base / "1"))
    with pytest.raises(ValueError, match=r"no loadable model version in .*face/2: ValueError: cannot parse .*saved_model.pb: not a SavedModel.*"
                                         r"face/4: FileNotFoundError: .* holds no saved_model.pb"):
        LocalModelServer(str(tmp_path / "models"), port=0, poll_seconds=0).start()
    process, line = serve_process([str(tmp_path / "models"), "--port", "0"])
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 2 and line == ""
    assert stderr.strip().splitlines()[-1].startswith("tfrf serve: no loadable model version in ")


def test_fingerprint_changes_with_content_and_names(tmp_path):
    version = tmp_path / "7"
    (version / "variables").mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"a" * 10)
    before = fingerprint(str(version))
    assert fingerprint(str(version)) == before
    (version / "variables" / "variables.index").write_bytes(b"")
    added = fingerprint(str(version))
    assert added != before and ("variables/variables.index", 0) in [entry[:2] for entry in added]
    (version / "saved_model.pb").write_bytes(b"b" * 11)
    assert ("saved_model.pb", 11) in [entry[:2] for entry in fingerprint(str(version))]


def test_version_folders_are_world_readable(tmp_path):
    """The exporter's folders were 0700 (mkdtemp): unreadable for a server running as another user."""
    version, _ = exported(1)  # exported by export_saved_model under umask 022
    previous = os.umask(0o022)
    try:
        atomic_directory(str(tmp_path / "other"), lambda path: open(os.path.join(path, "file"), "w").close())
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(version).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "other").st_mode) == 0o755
    for root, directories, files in os.walk(version):
        for name in directories:
            assert stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) == 0o755, name
        for name in files:
            assert stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) == 0o644, name
