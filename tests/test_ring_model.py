"""Property-based test: random sequences of writer, reader-group and observer
operations against a simple model of the ring (one process, non-blocking calls)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mimocorb import mimo_buffer as bm


class RingModel(RuleBasedStateMachine):
    @initialize(nslots=st.integers(1, 6))
    def make(self, nslots):
        self.n = nslots
        self.buf = bm.NewBuffer(nslots, 2, np.int64)
        self.writers = [bm.Writer(self.buf.new_writer()) for _ in range(2)]
        self.observer = bm.Observer(self.buf.new_observer(interval=0.0))
        self.written = 0
        self.groups = []  # per group: dict(start, claim, released set, cursor, members: list of (reader, held))
        self.last_observed = -1

    def teardown(self):
        for g in getattr(self, "groups", []):
            for m in g["members"]:
                m["reader"].close()
        for w in getattr(self, "writers", []):
            w.close()
        if hasattr(self, "buf"):
            self.buf.close()

    def _cursor(self, g):
        c = g["cursor"]
        while c in g["released"]:
            c += 1
        g["cursor"] = c
        return c

    def _space(self):
        if not self.groups:
            return True
        return self.written - min(self._cursor(g) for g in self.groups) < self.n

    @rule(which=st.integers(0, 1))
    def write(self, which):
        if not self._space():
            return  # would block: the model says the ring is full
        w = self.writers[which]
        w.put(np.array([self.written, which], np.int64), counter=self.written)
        self.written += 1

    @rule(which=st.integers(0, 1), k=st.integers(1, 4))
    def write_batch(self, which, k):
        # claim only what the model says fits, so the call cannot block
        if not self.groups:
            free = k
        else:
            free = self.n - (self.written - min(self._cursor(g) for g in self.groups))
        if free < 1:
            return
        w = self.writers[which]
        block = w.get_new_buffers(min(k, free))
        m = block.shape[0]
        assert 1 <= m <= min(k, free) and (self.written % self.n) + m <= self.n
        block[:, 0] = np.arange(self.written, self.written + m)
        block[:, 1] = which
        w.process_buffer()
        self.written += m

    @rule()
    def add_group(self):
        if len(self.groups) < 4:
            setup = self.buf.new_reader_group()
            g = {
                "start": self.written,
                "claim": self.written,
                "released": set(),
                "cursor": self.written,
                "members": [],
                "setup": setup,
            }
            self.groups.append(g)

    @precondition(lambda self: self.groups)
    @rule(gi=st.integers(0, 3))
    def add_member(self, gi):
        g = self.groups[gi % len(self.groups)]
        if len(g["members"]) < 3:
            g["members"].append({"reader": bm.Reader(g["setup"]), "held": None})

    def _member(self, gi, mi):
        g = self.groups[gi % len(self.groups)]
        if not g["members"]:
            return g, None
        return g, g["members"][mi % len(g["members"])]

    @precondition(lambda self: self.groups)
    @rule(gi=st.integers(0, 3), mi=st.integers(0, 2))
    def read(self, gi, mi):
        g, m = self._member(gi, mi)
        if m is None:
            return
        if m["held"] is not None:
            g["released"].add(m["held"])
            m["held"] = None
        expected_available = g["claim"] < self.written
        assert m["reader"].data_available() == expected_available
        v = m["reader"].get_timeout(0.0)
        if not expected_available:
            assert v is None
            return
        assert v is not None and int(v[0]) == g["claim"], (int(v[0]) if v is not None else None, g["claim"])
        m["held"] = g["claim"]
        g["claim"] += 1

    @precondition(lambda self: self.groups)
    @rule(gi=st.integers(0, 3), mi=st.integers(0, 2))
    def release(self, gi, mi):
        g, m = self._member(gi, mi)
        if m is None or m["held"] is None:
            return
        m["reader"].release()
        g["released"].add(m["held"])
        m["held"] = None

    @rule()
    def observe(self):
        got = self.observer.get(timeout=0.0)
        if self.written == 0 or self.written - 1 == self.last_observed:
            assert got is None
            return
        data, meta = got
        # the newest event, unless a slot is being rewritten (never here: one process)
        assert int(data[0]) == self.written - 1 and int(data[0]) > self.last_observed
        self.last_observed = int(data[0])

    @invariant()
    def status_matches(self):
        if not hasattr(self, "buf"):
            return
        count, filled, _, _ = self.buf.buffer_status()
        assert count == self.written
        expected_filled = 0 if not self.groups else self.written - min(self._cursor(g) for g in self.groups)
        assert filled == expected_filled
        st_ = self.buf.stats()
        assert st_["lost"] == 0


RingModel.TestCase.settings = settings(
    max_examples=100, stateful_step_count=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestRingModel = RingModel.TestCase
