"""read_json: the document, or one ValueError naming the file, the line and what was expected."""

import pytest

from moesched_base.json_file import read_json


def test_reads_the_document(tmp_path):
    path = tmp_path / "ok.json"
    path.write_text('{"a": [1, 2]}')
    assert read_json(path, "an object") == {"a": [1, 2]}


def test_bad_json_names_file_line_and_expectation(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n"a": 1,\n}')
    with pytest.raises(ValueError, match=r"bad\.json:3: expected run JSON \("):
        read_json(path, "run JSON")


def test_missing_file_is_oserror(tmp_path):
    with pytest.raises(OSError):
        read_json(tmp_path / "missing.json", "anything")
