"""The README's application example runs as printed and prints 500500; no tracked file keeps merge conflict markers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_application_example(tmp_path):
    text = README.read_text()
    section = text.split("## The application example", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    script = tmp_path / "example.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "500500"
    assert "resource_tracker" not in out.stderr


def test_no_merge_conflict_markers_in_tracked_text():
    """A merge that left both sides (a line of seven '<' or '>') never lands in a tracked file."""
    root = README.parent
    files = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, timeout=60)
    if files.returncode != 0:
        import pytest

        pytest.skip("not a git checkout: " + files.stderr.strip())
    marker = re.compile(r"^(<{7}|>{7})( |$)", re.M)
    bad = []
    for name in files.stdout.split():
        path = root / name
        if path.suffix in {".py", ".pyx", ".pxi", ".pxd", ".h", ".md", ".toml", ".yaml", ".yml", ".cfg", ".txt", ""}:
            try:
                text = path.read_text()
            except (UnicodeDecodeError, OSError):
                continue
            if marker.search(text):
                bad.append(name)
    assert not bad, f"merge conflict markers in {bad}"
