"""Reading recorded runs, event by event, in the layouts mimocorb's exporters write.

- **Parquet** (``rb_toParquetfile``): one file, columns ``counter``, ``timestamp``,
  ``deadtime``, then one column per field (a fixed-size list column when a slot holds
  more than one value); read one row group at a time.
- **Waveform .npy** (``rb_toWaveformfile``): records ``(counter, timestamp, deadtime,
  data[values_per_slot])``; memory-mapped.
- **HDF5**: one dataset per field at the root, named like the field, shape ``(N,)``
  when values_per_slot == 1 else ``(N, values_per_slot)``, and datasets ``counter``
  (int64), ``timestamp``, ``deadtime`` (float64); root attributes ``mimocorb_version``,
  ``buffer``, ``values_per_slot``, ``dtype`` (JSON list of [name, type]), ``setup``,
  ``config``. Read in blocks of events.
- **mimoCoRB 1.x tar archives** (1.x ``rb_toParquetfile``): a ``.tar`` (optionally
  compressed) of one Parquet file per event, named ``<filename>_<counter>.parquet``,
  whose columns are the fields and whose rows are the samples. 1.x's archives hold no
  time stamps or dead times; mimocorb's (``save_parquet`` with ``format: tar``) keep
  counter, time stamp and dead time in each member's Parquet key-value metadata (key
  ``mimocorb``, JSON), which are used when present. A folder of such archives is read
  archive after archive (sorted by name), as 1.x's ``parquetReader`` did.

:func:`open_recording` picks the reader from the file name; every reader yields
:class:`Block` s of consecutive events. Libraries are imported only when needed
(pyarrow: ``parquet`` extra, h5py: ``hdf5`` extra).
"""

from __future__ import annotations

import json
import logging
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from mimocorb.sources.optional import require

logger = logging.getLogger(__name__)

BLOCK_EVENTS = 256  # events read at a time (HDF5, .npy)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".gz", ".bz2")
METADATA = ("counter", "timestamp", "deadtime")
_MEMBER_COUNTER = re.compile(r"_(-?\d+)\.parquet$")


@dataclass
class Block:
    """Consecutive events: metadata arrays (length n) and field -> array of shape (n, values_per_slot)."""

    counter: np.ndarray
    timestamp: np.ndarray  # NaN where the recording has no time stamp
    deadtime: np.ndarray
    data: dict

    def __len__(self) -> int:
        return len(self.counter)


class Recording:
    """A recorded run: what it holds (fields, values per slot) and its events in blocks."""

    kind = "recording"
    has_times = True

    def __init__(self, path: Path):
        self.path = path
        self.fields: dict[str, np.dtype] = {}
        self.values_per_slot = 1
        self.n_events: Optional[int] = None

    def blocks(self) -> Iterator[Block]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def describe(self) -> str:
        fields = ", ".join(f"{n}: {d.name}" for n, d in self.fields.items())
        n = "?" if self.n_events is None else self.n_events
        return f"{self.kind} {self.path} ({n} events of {self.values_per_slot} x [{fields}])"


def _as_2d(a: np.ndarray, n: int, vps: int) -> np.ndarray:
    return np.asarray(a).reshape(n, vps)


class ParquetRecording(Recording):
    kind = "Parquet file"

    def __init__(self, path: Path):
        super().__init__(path)
        pa = require("pyarrow", "replay")
        pq = require("pyarrow.parquet", "replay")
        self._pa = pa
        self._file = pq.ParquetFile(str(path))
        schema = self._file.schema_arrow
        missing = [c for c in METADATA if c not in schema.names]
        if missing:
            raise ValueError(f"{path}: columns {missing} missing: not a Parquet file of mimocorb's rb_toParquetfile")
        for fld in schema:
            if fld.name in METADATA:
                continue
            t = fld.type
            if pa.types.is_fixed_size_list(t):
                self.values_per_slot = t.list_size
                t = t.value_type
            self.fields[fld.name] = np.dtype(t.to_pandas_dtype())
        self.n_events = self._file.metadata.num_rows

    def blocks(self) -> Iterator[Block]:
        vps = self.values_per_slot
        for i in range(self._file.num_row_groups):
            t = self._file.read_row_group(i)
            n = t.num_rows
            data = {}
            for name in self.fields:
                col = t.column(name).combine_chunks()
                data[name] = _as_2d(col.flatten().to_numpy() if vps > 1 else col.to_numpy(), n, vps)
            yield Block(*(t.column(c).to_numpy() for c in METADATA), data)

    def close(self) -> None:
        self._file.close()


class NpyRecording(Recording):
    kind = "waveform .npy file"

    def __init__(self, path: Path):
        super().__init__(path)
        self._rec = np.load(str(path), mmap_mode="r")
        names = self._rec.dtype.names or ()
        if tuple(names[:3]) != METADATA or "data" not in names:
            raise ValueError(
                f"{path}: record fields {list(names)}, expected counter, timestamp, deadtime, data "
                f"(a waveform file of mimocorb's rb_toWaveformfile)"
            )
        sub = self._rec.dtype["data"]
        base, shape = sub.subdtype if sub.subdtype else (sub, ())
        self.values_per_slot = int(np.prod(shape)) if shape else 1
        self.fields = {n: base[n] for n in base.names} if base.names else {"data": base}
        self.n_events = len(self._rec)

    def blocks(self) -> Iterator[Block]:
        vps = self.values_per_slot
        for a in range(0, len(self._rec), BLOCK_EVENTS):
            r = np.array(self._rec[a : a + BLOCK_EVENTS])  # a private copy of the block
            d = r["data"].reshape(len(r), vps)
            data = {n: d[n] for n in self.fields} if d.dtype.names else {"data": d}
            yield Block(r["counter"], r["timestamp"], r["deadtime"], data)

    def close(self) -> None:
        mm = getattr(self._rec, "_mmap", None)
        self._rec = None
        if mm is not None:
            mm.close()


class Hdf5Recording(Recording):
    kind = "HDF5 file"

    def __init__(self, path: Path):
        super().__init__(path)
        h5py = require("h5py", "replay")
        self._f = h5py.File(str(path), "r")
        missing = [c for c in METADATA if c not in self._f]
        if missing:
            self._f.close()
            raise ValueError(f"{path}: datasets {missing} missing: not an HDF5 file of mimocorb's HDF5 exporter")
        self.n_events = len(self._f["counter"])
        self.values_per_slot = int(self._f.attrs.get("values_per_slot", 1))
        for name, ds in self._f.items():
            if name in METADATA or not isinstance(ds, h5py.Dataset):
                continue
            self.fields[name] = ds.dtype
            self.values_per_slot = 1 if ds.ndim == 1 else int(ds.shape[1])

    def blocks(self) -> Iterator[Block]:
        vps, f = self.values_per_slot, self._f
        for a in range(0, self.n_events, BLOCK_EVENTS):
            b = min(a + BLOCK_EVENTS, self.n_events)
            data = {n: _as_2d(f[n][a:b], b - a, vps) for n in self.fields}
            yield Block(*(f[c][a:b] for c in METADATA), data)

    def close(self) -> None:
        self._f.close()


class TarParquetRecording(Recording):
    """mimoCoRB 1.x: tar archives of one Parquet file per event (a file, or a folder of them)."""

    kind = "1.x tar archive of Parquet files"
    has_times = False

    def __init__(self, path: Path):
        super().__init__(path)
        self._pq = require("pyarrow.parquet", "replay")
        if path.is_dir():
            self.archives = sorted(p for p in path.iterdir() if p.is_file() and _is_tar(p))
            if not self.archives:
                raise ValueError(f"{path}: no tar archive ({', '.join(TAR_SUFFIXES)}) in this folder")
        else:
            self.archives = [path]
        events = self._events()
        first = next(events, None)
        events.close()  # closes the archive opened for the first event
        if first is None:
            raise ValueError(f"{self.archives[0]}: no Parquet file in this archive")
        _, table = first
        self.has_times = _member_metadata(table) is not None  # written by mimocorb, not by 1.x
        self.values_per_slot = table.num_rows
        self.fields = {c: np.dtype(table.column(c).type.to_pandas_dtype()) for c in table.column_names}
        self.fields.pop("__index_level_0__", None)

    def _events(self) -> Iterator[tuple]:
        """(counter from the member name, Parquet table) of every event, archive after archive."""
        for archive in self.archives:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar:
                    if not member.isfile() or not member.name.endswith(".parquet"):
                        continue
                    m = _MEMBER_COUNTER.search(member.name)
                    counter = int(m.group(1)) if m else -1
                    yield counter, self._pq.read_table(tar.extractfile(member))

    def blocks(self) -> Iterator[Block]:
        vps = self.values_per_slot
        for counter, table in self._events():
            if table.num_rows != vps:
                raise ValueError(f"{self.path}: event {counter} has {table.num_rows} samples, the first had {vps}")
            data = {n: _as_2d(table.column(n).to_numpy(), 1, vps) for n in self.fields}
            md = _member_metadata(table)
            if md is None:
                yield Block(np.array([counter]), np.array([np.nan]), np.array([0.0]), data)
            else:
                yield Block(np.array([md[0]]), np.array([md[1]]), np.array([md[2]]), data)


def _member_metadata(table) -> Optional[tuple[int, float, float]]:
    """(counter, timestamp, deadtime) from a tar member's key-value metadata, None in a 1.x archive."""
    raw = (table.schema.metadata or {}).get(b"mimocorb")
    if raw is None:
        return None
    md = json.loads(raw)
    return int(md["counter"]), float(md["timestamp"]), float(md["deadtime"])


def _is_tar(p: Path) -> bool:
    return any(p.name.endswith(s) for s in TAR_SUFFIXES)


FORMATS = {"parquet": ParquetRecording, "npy": NpyRecording, "hdf5": Hdf5Recording, "tar": TarParquetRecording}


def detect_format(path: Path) -> Optional[str]:
    """The format of a recording from its name (a folder: 1.x tar archives)."""
    name = path.name.lower()
    if path.is_dir() or _is_tar(path):
        return "tar"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".npy"):
        return "npy"
    if name.endswith((".h5", ".hdf5", ".hdf")):
        return "hdf5"
    return None


def open_recording(path: str | Path, fmt: Optional[str] = None) -> Recording:
    """Open a recorded run; ``fmt`` (``parquet``, ``npy``, ``hdf5``, ``tar``) overrides the detection."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    fmt = fmt or detect_format(p)
    if fmt not in FORMATS:
        raise ValueError(f"{p}: format unknown; name it .parquet, .npy, .h5/.hdf5, .tar[.gz] or give 'format'")
    return FORMATS[fmt](p)
