"""The command line's promises: `tfrf --help` answers without TensorFlow; a user's mistake ends
any command with one line on stderr and exit status 2, `--debug` shows the traceback."""
import subprocess
import sys

import pytest

from tfrf.cli import main


def test_help_does_not_import_tensorflow():
    code = ("import sys, contextlib, io\n"
            "from tfrf.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    try:\n"
            "        main(['--help'])\n"
            "    except SystemExit as exit:\n"
            "        assert exit.code == 0\n"
            "assert 'train' in out.getvalue() and 'export' in out.getvalue()\n"
            "heavy = sorted(name for name in ('tensorflow', 'tensorflow_datasets', 'keras') if name in sys.modules)\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("argv, message", [
    (["export", "saved-model", "--weights", "/nonexistent/w.weights.h5", "--preset", "synthetic", "--out", "m"],
     "generator weights /nonexistent/w.weights.h5 do not exist"),
    (["export", "saved-model", "--out", "m"], "no model given: use --run RUN, or --weights W"),
    (["export", "tflite", "--run", "/nonexistent/run", "--out", "f.tflite"], "--run /nonexistent/run is not a directory"),
    (["train", "--preset", "no_such_preset", "--dry-run"], "unknown training preset 'no_such_preset'"),
    (["train", "--data-dir", "/nonexistent/data", "--preset", "synthetic", "--steps", "1", "--out", "r"],
     "--data-dir /nonexistent/data does not exist"),
    (["generate", "--run", "/nonexistent/run", "--sources", "a.jpg", "--target-pose", "b.json", "--out", "o.png"],
     "--run /nonexistent/run is not a directory"),
])
def test_user_mistakes_are_one_line_and_status_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert status == 2 and len(lines) == 1, captured.err
    assert lines[0].startswith(f"tfrf {argv[0]}: ") and message in lines[0]
    assert "Traceback" not in captured.err
    assert not (tmp_path / "m").exists() and not (tmp_path / "r" / "checkpoints").exists()


def test_run_config_with_unknown_fields_is_named(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"model": {"image_height": 64, "colour": "blue"}}')
    assert main(["export", "saved-model", "--run", str(run), "--out", str(tmp_path / "m")]) == 2
    assert "unknown ModelConfig fields ['colour']" in capsys.readouterr().err


def test_debug_shows_the_traceback():
    with pytest.raises(ValueError, match="no model given"):
        main(["export", "saved-model", "--out", "m", "--debug"])
