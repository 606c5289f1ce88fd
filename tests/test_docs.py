"""The documentation builds with warnings as errors (docs/, Sphinx), as CI builds it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("sphinx")
pytest.importorskip("furo")
pytest.importorskip("myst_parser")


def test_docs_build_without_warnings(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # docs/conf.py puts this checkout first on sys.path
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
           "-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(tmp_path / "html")]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    html = tmp_path / "html"
    for page in ["index", "getting_started", "from_sbi", "architecture", "api/pyro_lfi", "tutorials/quickstart"]:
        assert (html / f"{page}.html").is_file(), page
    assert "pyro_lfi.NPE" in (html / "api" / "pyro_lfi.html").read_text()
