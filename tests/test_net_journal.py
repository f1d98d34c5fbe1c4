"""The receiver's journal with batch claims: what a restarted receiver finds published."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("zmq")

from mimocorb import mimo_buffer as bm  # noqa: E402
from mimocorb.net.journal import Journal, journal_path  # noqa: E402

SID = 0x1234


def claim(w: bm.Writer, j: Journal, k: int, first: int, sseq: int) -> int:
    """Claim k slots (as the receiver does), journal them; returns how many were claimed."""
    v = w.get_new_buffers(k)
    j.record(w.held_seq, len(v), SID, first, sseq)
    v[:, 0] = np.arange(sseq, sseq + len(v))
    return len(v)


def test_only_the_newest_claim_is_checked_and_its_unpublished_entries_struck_out(tmp_path):
    """Claims of 4 and 3 events published, then a claim of 5 written but not published (the
    receiver killed before publishing): a restart finds 7 published, the batch's prefix."""
    with bm.NewBuffer(16, 2, np.int64) as buf:
        path = journal_path(tmp_path, "rx")
        w = bm.Writer(buf.new_writer())
        j = Journal(path, buf.new_writer()["token"], 64)
        assert claim(w, j, 4, 100, 100) == 4
        w.process_buffer()
        assert claim(w, j, 3, 100, 104) == 3
        w.process_buffer()
        assert claim(w, j, 5, 100, 107) == 5  # written, never published
        session = j.session
        j.close()
        w.close()  # gives the claim back: abandoned, like a killed writer's

        w2 = bm.Writer(buf.new_writer())
        j2 = Journal(path, buf.new_writer()["token"], 64)
        assert j2.recovered and j2.session == session
        assert j2.recover(w2) == {(SID, 100): 7}
        j2.close()
        # struck out: a second restart finds the same (the rule holds for the next restart)
        j3 = Journal(path, buf.new_writer()["token"], 64)
        assert j3.recover(w2) == {(SID, 100): 7}
        j3.close()
        w2.close()


def test_a_claim_across_the_end_of_the_journal_and_a_fully_published_newest_claim(tmp_path):
    """Entries wrap round the journal's table; a newest claim that was published counts whole."""
    with bm.NewBuffer(32, 2, np.int64) as buf:
        path = journal_path(tmp_path, "rx")
        w = bm.Writer(buf.new_writer())
        j = Journal(path, buf.new_writer()["token"], 8)
        assert claim(w, j, 6, 0, 0) == 6
        w.process_buffer()
        assert claim(w, j, 5, 6, 6) == 5  # entries 6, 7, 0, 1, 2 of the table
        w.process_buffer()
        j.close()
        w2 = bm.Writer(buf.new_writer())
        j2 = Journal(path, buf.new_writer()["token"], 8)
        # batch 0 lost its oldest entries to the wrap (3 of 6 left: sequences 3..5, a prefix of 6);
        # batch 6 is whole
        assert j2.recover(w2) == {(SID, 0): 6, (SID, 6): 5}
        j2.close()
        w.close()
        w2.close()


def test_a_journal_of_the_old_format_is_started_afresh(tmp_path):
    with bm.NewBuffer(8, 2, np.int64) as buf:
        path = journal_path(tmp_path, "rx")
        token = buf.new_writer()["token"]
        j = Journal(path, token, 16)
        j.close()
        mm = np.memmap(path, dtype=np.uint64, mode="r+")
        mm[1] = 1  # version 1: entries of 4 words, one event per claim
        mm.flush()
        del mm
        j2 = Journal(path, token, 16)
        assert not j2.recovered
        j2.close()
