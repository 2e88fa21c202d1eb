"""User mistakes on the command line: one red line, exit status 2, nothing written (issue 17 items 2 and 6)."""
from pathlib import Path

from typer.testing import CliRunner

from earmark.cli import app

from ..conftest import FAST

runner = CliRunner()


def test_a_spectrogram_model_with_waveform_features_fails_early_and_the_fixed_command_runs(
        synth_data: Path, tmp_path: Path):
    out = tmp_path / "run"
    args = ["train", str(synth_data), "--out", str(out), *(a for o in FAST for a in ("--set", o)),
            "--set", "train.epochs=1"]
    bad = runner.invoke(app, [*args, "--set", "features.kind=waveform"])
    assert bad.exit_code == 2, bad.output
    lines = [line for line in bad.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "features.kind=waveform" in lines[0] and "model.name=cnn" in lines[0] and "logmel" in lines[0]
    assert "Traceback" not in bad.output and bad.exception is None or isinstance(bad.exception, SystemExit)
    assert not out.exists()  # nothing decoded or written

    # an attempt that failed after the run folder was started, before any training (one class only)
    one_class = tmp_path / "one-class"
    (one_class / "tone").mkdir(parents=True)
    for f in sorted((synth_data / "tone").iterdir())[:3]:
        (one_class / "tone" / f.name).write_bytes(f.read_bytes())
    failed = runner.invoke(app, ["train", str(one_class), "--out", str(out), "--set", "train.epochs=3"])
    assert failed.exit_code == 2 and "only one class" in failed.output
    assert (out / "config.yaml").is_file()

    good = runner.invoke(app, args)  # other settings, same --out: the folder is reused
    assert good.exit_code == 0, good.output
    assert "track accuracy" in good.output and (out / "members.json").is_file()


def test_predict_on_a_folder_without_audio_says_so(trained_run: Path, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no audio here")
    res = runner.invoke(app, ["predict", str(trained_run), str(empty)])
    assert res.exit_code == 2
    assert "no audio files" in res.output and str(empty) in res.output and "[]" not in res.output


def test_unknown_recipe_is_one_line_from_the_one_handler(tmp_path: Path):
    res = runner.invoke(app, ["prepare", str(tmp_path), "--recipe", "no-such-recipe"])
    assert res.exit_code == 2
    assert res.output.startswith("error: unknown recipe 'no-such-recipe'")
