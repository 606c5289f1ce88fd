"""The README's quickstart block runs as pasted (with a smaller budget, to stay fast)."""

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def quickstart_block() -> str:
    text = README.read_text()
    section = text[text.index("## Quickstart") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_quickstart_block_runs_when_pasted(tmp_path):
    code = quickstart_block()
    assert "..." not in code  # nothing elided
    small = code.replace("10_000", "2_000").replace("lfi.NPE(model, guide)", "lfi.NPE(model, guide, max_epochs=5)")
    assert small != code
    script = tmp_path / "quickstart_block.py"
    script.write_text(small)
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
