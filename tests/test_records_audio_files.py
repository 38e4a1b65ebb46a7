"""A call's audio files on disk: found by name, and removed even when one of them resists."""

from __future__ import annotations

from pathlib import Path

from relay.records.service import Records, probe_audio_parts
from relay.records.sqlite import SqliteStore

SID = "CA" + "1" * 32


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_bytes(b"fLaC")


def test_a_calls_parts_are_found_by_name_across_a_gap(tmp_path: Path) -> None:
    # Part 1's bridge recorded nothing; part 3 came from a replica that died before its end row.
    _touch(tmp_path, f"{SID}.flac", f"{SID}.2.flac", f"{SID}.3.flac", "CA" + "2" * 32 + ".flac", f"{SID}.x.flac")
    assert [part for part, _ in probe_audio_parts(tmp_path, SID)] == [0, 2, 3]
    assert probe_audio_parts(tmp_path, "CA" + "3" * 32) == []


async def test_a_file_that_cannot_be_removed_does_not_keep_the_others(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "relay.db"))
    audio = tmp_path / "audio"
    audio.mkdir()
    _touch(audio, f"{SID}.flac", f"{SID}.2.flac")
    (audio / f"{SID}.1.flac").mkdir()  # unlink() refuses a folder: an OSError like EACCES
    records = Records(store, audio_dir=audio, retention_days=0)
    try:
        await store.migrate()
        assert await records.delete(SID)
    finally:
        await store.close()
    assert sorted(p.name for p in audio.iterdir()) == [f"{SID}.1.flac"]
    assert records.audio_delete_failures == 1
