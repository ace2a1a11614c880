"""Output-folder and disk errors surface before training, as one line that says what recovers."""

from __future__ import annotations

import errno
import json
import stat
from pathlib import Path

import pytest
from fixture_records import write_digits

from cirbench import cli, engine, runner
from cirbench.cli import main
from cirbench.reporting import STATUS_BEGIN, STATUS_END

SMOKE = ["run", "digits", "--method", "ce", "--profile", "smoke", "--seeds", "0", "-q"]


def enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("target", ["file", "/dev/null", "loop"])
def test_out_that_is_not_a_folder_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    if target == "file":
        out = tmp_path / "f"
        out.write_text("x")
    elif target == "loop":
        out = tmp_path / "loop"
        out.symlink_to(out)
    else:
        out = Path(target)
    assert main([*SMOKE, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cirbench: error: --out {out}") and "Traceback" not in err


def test_unwritable_or_full_out_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    with monkeypatch.context() as m:
        m.setattr(cli.tempfile, "TemporaryFile", read_only)
        assert main([*SMOKE, "--out", str(tmp_path)]) == 2
    assert "cannot write there (Read-only file system)" in capsys.readouterr().err
    monkeypatch.setattr(cli.shutil, "disk_usage", lambda p: _AlmostFull())
    assert main([*SMOKE, "--out", str(tmp_path)]) == 2
    assert "MiB free, a run needs about" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.json")) and not list(tmp_path.rglob("*.pt"))


class _AlmostFull:
    free = 1024


def test_full_disk_at_a_checkpoint_leaves_no_temp_file_and_says_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine.torch, "save", enospc)
    assert main([*SMOKE, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot write checkpoint" in err and "--resume" in err and "Traceback" not in err
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_a_failed_record_write_is_recovered_by_resume_without_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:
        m.setattr(runner, "write_record", enospc)
        assert main([*SMOKE, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot write the record" in err and "--resume" in err
    assert not list(tmp_path.rglob("*.json")) and not list(tmp_path.rglob("*.tmp"))
    assert main([*SMOKE, "--out", str(tmp_path), "--resume"]) == 0
    path = next(tmp_path.rglob("*.json"))
    rec = json.loads(path.read_text())
    assert rec["resumed_at_epoch"] == 2  # both epochs came from the checkpoint
    assert stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044  # readable by group and others


def test_report_refuses_a_readme_without_markers_before_writing_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_digits(tmp_path / "root")
    readme = tmp_path / "README.md"
    readme.write_text("# no markers here\n")
    out = tmp_path / "report"
    args = ["report", "--runs", str(tmp_path / "root"), "--out", str(out), "--no-plots"]
    assert main([*args, "--readme", str(readme)]) == 2
    assert STATUS_BEGIN in capsys.readouterr().err
    assert not out.exists() and readme.read_text() == "# no markers here\n"


@pytest.mark.slow
def test_report_killed_at_random_leaves_the_old_or_the_new_readme(tmp_path: Path) -> None:
    import random
    import subprocess
    import sys
    import time

    root = tmp_path / "root"
    write_digits(root)
    readme = tmp_path / "README.md"
    old = f"# t\n\n{STATUS_BEGIN}\nold status\n{STATUS_END}\n\nthe rest of the README\n" * 50
    cmd = [sys.executable, "-m", "cirbench", "report", "--runs", str(root)]
    cmd += ["--out", str(tmp_path / "out"), "--readme", str(readme)]
    readme.write_text(old)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    duration = time.perf_counter() - start
    new = readme.read_text()
    assert new != old
    rng = random.Random(0)
    for _ in range(8):
        readme.write_text(old)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, duration))
        proc.kill()
        proc.wait()
        assert readme.read_text() in (old, new)
