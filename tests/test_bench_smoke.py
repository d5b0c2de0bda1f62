"""Each benchmark of `make bench` starts, runs end to end at tiny sizes and prints its verdict.

Not a measurement (the sizes are far too small and the machine is shared): it keeps the scripts
from rotting between the runs that produce the README's Performance figures.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"

CASES = {
    "ack_latency.py": (["--concurrency", "3", "--rounds", "1"], "target p99 bot/baseline at 3:"),
    "time_to_page.py": (["--alone", "1", "--concurrency", "3", "--rounds", "1"], "time to page (P1 declares"),
    "cold_start.py": (["--starts", "1"], "target: cold start bot / bare Bolt"),
    "history.py": (["--resolved", "300", "--open", "5", "--requests", "2"], "targets: "),
    "diagnose.py": (["--rounds", "1"], "verdict of the last round"),
    "pagerduty_down.py": (["--rounds", "1"], "verdict: PagerDuty down"),
    "storm.py": (["--declares", "3"], "target: fewer than 5 rate-limited answers"),
    "alert_flood.py": (
        [
            "--groups",
            "2",
            "--alerts",
            "20",
            "--resends",
            "1",
            "--interval",
            "2",
            "--declare-at",
            "0.5",
            "--actions",
            "declare",
        ],
        "target: declare: the person's declare paged within 1 s",
    ),
}


@pytest.mark.parametrize("script", sorted(CASES))
def test_bench_script_runs_at_tiny_sizes(script: str, tmp_path: Path) -> None:
    args, verdict = CASES[script]
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert verdict in done.stdout, done.stdout[-3000:]
    assert "FAILED" not in done.stdout, done.stdout[-3000:]
