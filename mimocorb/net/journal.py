"""The receiver's journal: which stream sequences it published, kept across a restart.

A receiver killed after publishing events but before its acknowledgement left the
host would, when restarted, get them again from the sender. The journal is a small
file (``<run folder>/net-journal-<name>.bin``, an ``np.memmap``) with one entry per
slot the receiver claimed, ``(ring sequence + 1, sender session, batch first, stream
sequence)``, written *after* the slot is claimed and *before* it is published. On a
restart, the entries and the buffer's :meth:`~mimocorb.mimo_buffer.Writer.seq_state`
tell exactly which stream sequences were published:

- the receiver claims a slot only after publishing the previous one (``get_new_buffer``
  publishes, then claims), so every entry but the newest was published;
- the newest one is published if ``seq_state`` says so; "abandoned" or "pending" (its
  writer, the dead receiver, held it) means it was not; "later" (other writers of the
  same buffer went a whole lap round the ring meanwhile) cannot be told apart -- it
  counts as not published and is taken again (it may then be there twice; a warning
  says so). That entry is then struck out, so the rule holds for the next restart.

An entry is struck out (its first word zeroed) before it is rewritten, so a kill in
the middle of writing one leaves no entry that names the wrong event. The journal
holds ``entries`` (at least twice the receiver's window) entries, more than it can ever
have published without an acknowledgement. It belongs to one buffer (its token is in
the header) and is used by one process at a time (an exclusive ``flock``); a journal of
another buffer (a new run) is started afresh with a new session.

What it does not cover: the host's power loss (the file is not synced to disk), and
the slot being written when the receiver was killed -- it stays behind, counted as
abandoned in the buffer, and the event arrives again in another slot.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from mimocorb.net.link import new_session
from mimocorb.net.protocol import NetError

logger = logging.getLogger(__name__)

MAGIC = 0x4C4E524A4E42434D  # "MCBNJRNL"
VERSION = 1
_HEADER_WORDS = 8  # magic, version, buffer token, session, entries, (reserved)
_ENTRY_WORDS = 4


def journal_path(run_folder: Path, name: str) -> Path:
    """The journal file of receiver ``name`` in a run folder."""
    return Path(run_folder) / f"net-journal-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.bin"


class Journal:
    """A receiver's journal (see the module notes).

    Parameters
    ----------
    path : Path
        The file (made if missing).
    token : int
        The token of the buffer written to (from the writer's setup dict).
    entries : int
        Entries in the file.
    """

    def __init__(self, path: Path, token: int, entries: int):
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise NetError(f"journal {self.path} is in use by another live receiver") from None
        words = _HEADER_WORDS + _ENTRY_WORDS * entries
        size = os.fstat(self._fd).st_size
        self._mm = np.memmap(self.path, dtype=np.uint64, mode="r+", shape=(max(words, size // 8),))
        head = self._mm[:_HEADER_WORDS]
        self.recovered = bool(head[0] == MAGIC and head[1] == VERSION and head[2] == token % 2**64)
        if self.recovered:
            self.session = int(head[3])
            self.entries = int(head[4])
        else:
            self.session = new_session()
            self.entries = entries
            self._mm[:] = 0
            head[1], head[2], head[3], head[4] = VERSION, token % 2**64, self.session, entries
            head[0] = MAGIC  # last: a journal is valid once its header is complete
        self._table = self._mm[_HEADER_WORDS : _HEADER_WORDS + _ENTRY_WORDS * self.entries].reshape(-1, 4)
        self._w = memoryview(self._table).cast("B").cast("Q")  # scalar stores without NumPy's overhead
        self.next = 0

    def recover(self, writer: Any) -> dict[tuple[int, int], int]:
        """What was published before a restart: ``{(sender session, batch first): events published}``
        (a prefix of the batch). Strikes out the newest entry if it was not published."""
        if not self.recovered:
            return {}
        t = self._table
        valid = np.nonzero(t[:, 0])[0]
        if valid.size == 0:
            return {}
        newest = int(valid[np.argmax(t[valid, 0])])
        self.next = (newest + 1) % self.entries
        state = writer.seq_state(int(t[newest, 0]) - 1)
        if state != "published":
            if state == "later":
                logger.warning(
                    "journal %s: other writers went round the ring while the receiver was down; "
                    "stream sequence %d of sender %x may have been published and is taken again",
                    self.path,
                    int(t[newest, 3]),
                    int(t[newest, 1]),
                )
            self._w[_ENTRY_WORDS * newest] = 0
            valid = valid[valid != newest]
        out: dict[tuple[int, int], int] = {}
        for sid, first, sseq in t[valid, 1:].tolist():
            key = (sid, first)
            out[key] = max(out.get(key, 0), sseq - first + 1)
        logger.info("journal %s: %d published events of %d batches recovered", self.path, len(valid), len(out))
        return out

    def record(self, seq: int, sid: int, first: int, sseq: int) -> None:
        """Ring sequence ``seq`` (claimed, not yet published) holds ``sseq`` of sender ``sid``."""
        w, j = self._w, _ENTRY_WORDS * self.next
        w[j] = 0  # struck out first: a kill in the middle leaves no wrong entry
        w[j + 1] = sid
        w[j + 2] = first
        w[j + 3] = sseq
        w[j] = seq + 1
        self.next += 1
        if self.next == self.entries:
            self.next = 0

    def close(self) -> None:
        """Unmap and unlock (the file stays, for the next restart)."""
        if self._fd >= 0:
            self._w.release()
            self._table = self._mm = None  # the mapping goes with the last reference
            os.close(self._fd)
            self._fd = -1
