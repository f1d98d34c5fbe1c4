"""The receiver's journal: which stream sequences it published, kept across a restart.

A receiver killed after publishing events but before its acknowledgement left the
host would, when restarted, get them again from the sender. The journal is a small
file (``<run folder>/net-journal-<name>.bin``, an ``np.memmap``) with one entry per
slot the receiver claimed, ``(ring sequence + 1, sender session, batch first, stream
sequence, first ring sequence of its claim + 1)``, written *after* the slots are
claimed and *before* they are published. The receiver claims several consecutive
slots at once (``get_new_buffers``) and publishes them together; on a restart, the
entries and the buffer's :meth:`~mimocorb.mimo_buffer.Writer.seq_state` tell exactly
which stream sequences were published:

- the receiver claims slots only after publishing the ones it held (``get_new_buffers``
  and ``process_buffer`` publish first), so every entry of every claim but the newest
  was published;
- an entry of the newest claim is published if ``seq_state`` says so (a kill in the
  middle of publishing a claim leaves a published prefix); "abandoned" or "pending"
  (its writer, the dead receiver, held it) means it was not; "later" (other writers of
  the same buffer went a whole lap round the ring meanwhile) cannot be told apart -- it
  counts as not published and is taken again (it may then be there twice; a warning
  says so). Entries found not published are struck out, so the rule holds for the next
  restart.

An entry is struck out (its first word zeroed) before it is rewritten, and its first
word is written last, so a kill in the middle of writing a claim's entries leaves no
entry that names the wrong event. The journal holds ``entries`` (at least twice the
receiver's window) entries, more than it can ever have published without an
acknowledgement. It belongs to one buffer (its token is in the header) and is used by
one process at a time (an exclusive ``flock``); a journal of another buffer (a new
run) or of another format version is started afresh with a new session.

What it does not cover: the host's power loss (the file is not synced to disk), and
the slots being written when the receiver was killed -- they stay behind, counted as
abandoned in the buffer, and their events arrive again in other slots.
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
VERSION = 2  # 2: entries name their claim (batch claims)
_HEADER_WORDS = 8  # magic, version, buffer token, session, entries, (reserved)
_ENTRY_WORDS = 5  # ring seq + 1, sender session, batch first, stream seq, claim first + 1


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
        self._table = self._mm[_HEADER_WORDS : _HEADER_WORDS + _ENTRY_WORDS * self.entries].reshape(-1, _ENTRY_WORDS)
        self._w = memoryview(self._table).cast("B").cast("Q")  # for scalar stores
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
        claim = valid[t[valid, 4] == t[newest, 4]]  # the newest claim: the only one that may be unpublished
        gone = []
        for e in claim.tolist():
            state = writer.seq_state(int(t[e, 0]) - 1)
            if state == "published":
                continue
            if state == "later":
                logger.warning(
                    "journal %s: other writers went round the ring while the receiver was down; "
                    "stream sequence %d of sender %x may have been published and is taken again",
                    self.path,
                    int(t[e, 3]),
                    int(t[e, 1]),
                )
            gone.append(e)
        if gone:
            t[gone, 0] = 0  # struck out: not published, so the rule holds at the next restart
            valid = np.setdiff1d(valid, gone)
        out: dict[tuple[int, int], int] = {}
        for sid, first, sseq in t[valid, 1:4].tolist():
            key = (sid, first)
            out[key] = max(out.get(key, 0), sseq - first + 1)
        logger.info("journal %s: %d published events of %d batches recovered", self.path, len(valid), len(out))
        return out

    def record(self, seq: int, m: int, sid: int, first: int, sseq: int) -> None:
        """Ring sequences ``seq .. seq+m-1`` (one claim, not yet published) hold stream sequences
        ``sseq .. sseq+m-1`` of sender ``sid``'s batch ``first``."""
        if m <= 4 and self.next + m <= self.entries:  # a few entries: scalar stores, without NumPy's overhead
            w, j = self._w, _ENTRY_WORDS * self.next
            for q in range(m):
                w[j] = 0  # struck out first: a kill in the middle leaves no wrong entry
                w[j + 1], w[j + 2], w[j + 3], w[j + 4] = sid, first, sseq + q, seq + 1
                w[j] = seq + q + 1  # last: now valid
                j += _ENTRY_WORDS
            self.next = (self.next + m) % self.entries
            return
        t, j, rest = self._table, self.next, m
        while rest:  # at most two slices: the table is a ring of entries
            k = min(rest, self.entries - j)
            e = t[j : j + k]
            e[:, 0] = 0  # struck out first: a kill in the middle leaves no wrong entry
            e[:, 1] = sid
            e[:, 2] = first
            e[:, 3] = np.arange(sseq, sseq + k, dtype=np.uint64)
            e[:, 4] = seq + 1
            e[:, 0] = np.arange(seq + 1 + (m - rest), seq + 1 + (m - rest) + k, dtype=np.uint64)  # last: now valid
            sseq += k
            rest -= k
            j = (j + k) % self.entries
        self.next = j

    def close(self) -> None:
        """Unmap and unlock (the file stays, for the next restart)."""
        if self._fd >= 0:
            self._w.release()
            self._table = self._mm = None  # the mapping goes with the last reference
            os.close(self._fd)
            self._fd = -1
