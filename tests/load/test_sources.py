"""Which files a load reads, and reading them: JSON, NDJSON, gzip, malformed content."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from flode.load.sources import SourceError, digest, find, ndjson_chunks, read_json


def test_folders_are_searched_for_json_and_ndjson_files_gzipped_or_not(tmp_path: Path) -> None:
    names = ["a.json", "b.json.gz", "deeper/c.ndjson", "deeper/d.ndjson.gz", "notes.txt"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    files, missing = find([tmp_path, tmp_path / "a.json"])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == names[:4]
    assert missing == []


def test_paths_that_name_nothing_loadable_are_reported(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("")
    _, missing = find([tmp_path / "nothing.json", tmp_path / "empty", tmp_path / "notes.txt"])
    assert [m.reason for m in missing] == [
        "no such file or folder",
        "the folder holds no .json, .json.gz, .ndjson, .ndjson.gz files",
        "not a .json, .json.gz, .ndjson, .ndjson.gz file",
    ]


def test_ndjson_is_read_in_chunks_skipping_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "Patient.ndjson.gz"
    lines = [f'{{"resourceType":"Patient","id":"p{i}"}}' for i in range(5)]
    path.write_bytes(gzip.compress("\n".join([*lines[:2], "", *lines[2:]]).encode() + b"\n"))
    chunks = list(ndjson_chunks(path, 2))
    assert [[line.number for line in chunk] for chunk, _ in chunks] == [[1, 2], [4, 5], [6]]
    assert chunks[-1][1] == path.stat().st_size
    assert chunks[0][0][0].resource == {"resourceType": "Patient", "id": "p0"}


def test_a_malformed_line_names_its_number(tmp_path: Path) -> None:
    path = tmp_path / "Patient.ndjson"
    path.write_text('{"resourceType":"Patient"}\n{"resourceType":\n')
    with pytest.raises(SourceError, match=r"^line 2 is not valid JSON"):
        list(ndjson_chunks(path, 10))


def test_decimals_keep_their_digits(tmp_path: Path) -> None:
    path = tmp_path / "o.json"
    path.write_text('{"resourceType":"Observation","valueQuantity":{"value":1.50}}')
    assert repr(read_json(path)["valueQuantity"]["value"]) == "1.50"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("broken.json", b"{not json", "is not valid JSON"),
        ("broken.json.gz", b"not gzip at all", "cannot be read"),
    ],
)
def test_malformed_files_say_why(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SourceError, match=message):
        read_json(path)


def test_the_digest_is_of_the_file_as_stored(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_bytes(b"{}")
    assert digest(path) == "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
