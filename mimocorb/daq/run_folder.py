"""The run folder ``<output_directory>/<setup name>_<date>_<time>/``.

It holds copies of the setup and config files, the run log (``run.log``), the buffer
statistics over time (``buffer_stats.csv``), the exporters' files and ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Optional

logger = logging.getLogger(__name__)

LOG_FILE = "run.log"
STATS_FILE = "buffer_stats.csv"
SUMMARY_FILE = "summary.json"


class RunFolder:
    """A run folder; create one with :meth:`create`."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def create(cls, output_directory: str | Path, name: str, start: Optional[float] = None) -> RunFolder:
        """Make a new folder ``<output_directory>/<name>_<YYYY-MM-DD>_<HHMMSS>`` (``_2``, ... if taken)."""
        t = time.localtime(start if start is not None else time.time())
        base = Path(output_directory) / f"{name}_{time.strftime('%Y-%m-%d_%H%M%S', t)}"
        base.parent.mkdir(parents=True, exist_ok=True)
        path, n = base, 1
        while True:
            try:
                path.mkdir()
                break
            except FileExistsError:
                n += 1
                path = base.with_name(f"{base.name}_{n}")
        logger.info("run folder %s", path)
        return cls(path.resolve())

    @property
    def prefix(self) -> str:
        """The path with a trailing slash, as 1.x passed ``directory_prefix`` to user code."""
        return str(self.path) + "/"

    @property
    def log_file(self) -> Path:
        return self.path / LOG_FILE

    @property
    def stats_file(self) -> Path:
        return self.path / STATS_FILE

    @property
    def summary_file(self) -> Path:
        return self.path / SUMMARY_FILE

    def copy_inputs(self, files: Iterable[Path]) -> list[Path]:
        """Copy setup/config files in; a repeated base name gets its parent folder's name prefixed."""
        copied: list[Path] = []
        for f in files:
            f = Path(f)
            target = self.path / f.name
            if target.exists():
                target = self.path / f"{f.parent.name}_{f.name}"
            shutil.copyfile(f, target)
            copied.append(target)
        return copied

    def write_summary(self, summary: dict[str, Any]) -> Path:
        """Write ``summary.json`` (atomically: written to a temporary name, then renamed)."""
        tmp = self.summary_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        tmp.replace(self.summary_file)
        return self.summary_file
