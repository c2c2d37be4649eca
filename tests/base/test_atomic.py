"""moesched_base.atomic: all-or-nothing writes with the usual file mode."""

import os
import stat

import pytest

from moesched_base.atomic import atomic_write, atomic_write_json, atomic_write_text


def test_write_text_and_mode(tmp_path):
    target = atomic_write_text(tmp_path / "sub" / "out.txt", "hello")
    assert target.read_text() == "hello"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_failed_write_leaves_previous_file_and_no_temp(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})

    def boom(fh):
        fh.write(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "x.json", {"v": float("nan")})
    assert not (tmp_path / "x.json").exists()
