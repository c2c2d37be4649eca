"""A server's new session inherits the caller's nice value as its autogroup priority."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import sys
from pathlib import Path
from experiments.engines.process import spawn
p = spawn(["sleep", "5"], {}, Path(sys.argv[1]))
print(Path(f"/proc/{p.pid}/autogroup").read_text().strip())
p.kill()
"""


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="kernel without autogroups")
def test_spawned_session_runs_at_the_callers_priority(tmp_path: Path) -> None:
    out = subprocess.run(["nice", "-n", "7", sys.executable, "-c", SCRIPT, str(tmp_path / "log")],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip().endswith("nice 7"), out.stdout
