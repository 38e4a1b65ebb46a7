"""The load bench at small scale: the whole harness (three processes, signed streams,
real-time frames, both fakes) runs, and its figures account for every frame it sent."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("mode", ["inbound", "both"])
def test_load_bench_small_run_accounts_for_every_frame(tmp_path: Path, mode: str) -> None:
    out = tmp_path / "load.json"
    run = subprocess.run(
        [sys.executable, "bench/load.py", "--steps", "4", "--seconds", "3", "--mode", mode, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    (step,) = report["steps"]
    tracks = 2 if mode == "both" else 1
    assert step["calls"] == 4
    assert step["frames_sent"] == 4 * 150 * tracks  # 3 s of 20 ms frames per call and track
    assert step["frames_in"] == step["frames_sent"], "the relay counted a different number of frames"
    assert step["dropped"] == 0 and step["errors"] == 0
    assert step["sync_messages"] > 0  # the fake model answered and Sync carried it
    for figure in ("cpu_pct", "us_per_frame", "lag_p99_ms", "lat_p50_ms", "lat_p99_ms", "send_p99_ms"):
        assert math.isfinite(step[figure]) and step[figure] >= 0, figure
    assert step["lat_p50_ms"] < 1000  # audio reached the fake model while the call ran
    assert "highest N that held" in run.stdout
