# Part of src/ringbuf.pyx (the module mimocorb._ringbuf), included there in the order
# of the segment's layout; it shares that file's imports and declarations.

# ===========================================================================
# The reaper
#
# A dead process's entry is taken by a CAS of its owner word (an identity:
# pid and start time, so a reused pid is not mistaken for it) to the reaper's
# identity with the REAPING flag; an entry whose reaper died is taken over and
# reaped again from the start. For each sequence the entry announces (I5):
#   1. not claimed by anyone: nothing to do;
#   2. a live entry announces it: that one holds it (or lost its CAS and will
#      announce something else); try again later;
#   3. already finished (published, abandoned, released): nothing to do;
#   4. otherwise a dead entry held it: finish it with a CAS that only moves
#      the mark forward, and count the loss if this CAS won (I6).
# Dead entries that announce the same sequence (one lost its CAS, one won)
# never wait for each other: only live ones are waited for. After a reader's
# sequences, the group's orphan decision (I8) is made under its lock, then
# the entry is freed; a reaper that dies anywhere in between leaves the entry
# REAPING, and the next pass redoes it all.
# A group's losses are counted under its lock through the log of I6, so a
# reaper killed anywhere leaves them right; the buffer-wide statistic of
# abandoned sequences (abandoned_total) is added by the CAS winner right after
# its CAS: a reaper killed between the two leaves that one uncounted there.
# ===========================================================================

cdef bint _live_announcer(rb_header *h, int skip, uint32_t role, uint32_t group, uint64_t seq) noexcept nogil:
    """Does a live registered entry other than `skip` announce that it holds seq?"""
    cdef int i
    cdef rb_proc *p
    cdef uint64_t o, first
    cdef uint32_t n
    for i in range(RB_MAX_PROCS):
        if i == skip:
            continue
        p = &h.procs[i]
        o = rb_load_sc64(&p.owner)
        if o == 0 or (o & RB_ID_FLAGS) or p.role != role or (role == RB_ROLE_READER and p.group != group):
            continue
        n = rb_load_acq32(&p.held_n)
        if n == 0:
            continue
        first = rb_load_rlx64(&p.held)
        if first <= seq < first + n and rb_ident_alive(o):
            return True
    return False


cdef int _reap_reader(rb_header *h, uint64_t *done, int i) noexcept nogil:
    """Finish what dead reader entry i held. 0: try again later, 1: done."""
    cdef rb_proc *p = &h.procs[i]
    cdef uint64_t n = h.nslots
    cdef uint32_t g = p.group
    cdef rb_group *grp
    cdef uint64_t *done_g
    cdef uint64_t q, d, first
    cdef uint32_t held_n
    if g >= rb_load_acq32(&h.ngroups):
        return 1  # never a member of a real group
    grp = &h.groups[g]
    done_g = done + <uint64_t>g * n
    if not _group_trylock(h, done, g):
        return 0  # a state change under way: after it
    held_n = rb_load_acq32(&p.held_n)
    first = rb_load_rlx64(&p.held)
    for q in range(first, first + held_n):
        if (rb_load_sc64(&grp.claim) & ~RB_HOLD) <= q:
            continue  # 1. announced, never claimed
        if _live_announcer(h, i, RB_ROLE_READER, g, q):
            _group_unlock(grp)
            return 0  # 2.
        if rb_load_sc64(&grp.release) > q:
            continue  # 3. released
        d = rb_load_sc64(&done_g[q % n])
        if d >= q + 1:
            continue  # 3. marked done
        # 4. (I6) log, mark, count: nobody else finishes q now (no live holder, lock held)
        _log_step(grp, RB_LOG_DEAD, q + 1, rb_load_acq64(&grp.lost_dead_reader) + 1)
        if rb_cas_sc64(&done_g[q % n], d, q + 1):
            _fault(FP_REAPER_MARKED)
            rb_store_rel64(&grp.lost_dead_reader, rb_load_acq64(&grp.log_target))
        _log_clear(grp)
    _advance_release(grp, done_g, n)
    rb_store_sc32(&p.held_n, 0)
    _group_settle(h, g, False)  # the last live member gone: the group stops gating (I8)
    _group_unlock(grp)
    return 1


cdef int _reap_writer(rb_header *h, rb_slot *slots, int i) noexcept nogil:
    """Abandon what dead writer entry i claimed and never published. 0: try again later."""
    cdef rb_proc *p = &h.procs[i]
    cdef uint64_t n = h.nslots
    cdef uint64_t q, a, first, out, published
    cdef uint32_t held_n = rb_load_acq32(&p.held_n)
    cdef rb_slot *sl
    first = rb_load_rlx64(&p.held)
    # I6: a writer that died while publishing its batch published a prefix of
    # it (in order, and nobody else finishes a claim it won): count that prefix.
    published = rb_load_acq64(&p.published)
    if held_n and rb_load_acq64(&p.pub_target) > published:  # it was publishing its own claim
        out = 0
        while out < held_n:
            sl = &slots[(first + out) % n]
            if rb_load_acq64(&sl.pub) < first + out + 1 and (rb_load_acq64(&sl.abandoned) & ~RB_VOID) < first + out + 1:
                break
            out += 1
        rb_store_rel64(&p.pub_target, published + out)  # first: a successor recounts the same prefix
        rb_store_rel64(&p.published, published + out)
    for q in range(first, first + held_n):
        if rb_load_sc64(&h.write_claim) <= q:
            continue  # 1. never claimed
        if _live_announcer(h, i, RB_ROLE_WRITER, 0, q):
            return 0  # 2.
        sl = &slots[q % n]
        if rb_load_acq64(&sl.pub) >= q + 1:
            continue  # 3. published (a later lap implies this one finished: I1a)
        a = rb_load_sc64(&sl.abandoned)
        if (a & ~RB_VOID) >= q + 1:
            continue  # 3. abandoned
        if rb_cas_sc64(&sl.abandoned, a, q + 1):  # 4. (I6)
            _fault(FP_REAPER_MARKED)
            rb_add_sc64(&h.abandoned_total, 1)
    rb_store_sc32(&p.held_n, 0)
    return 1


cdef int _reap(rb_header *h, rb_slot *slots, uint64_t *done) noexcept nogil:
    cdef int i
    cdef int reaped = 0
    cdef int ok
    cdef uint64_t o
    cdef uint64_t me = rb_self_ident() | RB_ID_REAPING
    cdef rb_proc *p
    for i in range(RB_MAX_PROCS):
        p = &h.procs[i]
        o = rb_load_acq64(&p.owner)
        if o == 0 or (o & ~RB_ID_FLAGS) == (me & ~RB_ID_FLAGS) or rb_ident_alive(o):
            continue  # free, ours, or alive
        if o & RB_ID_JOINING:
            rb_cas_sc64(&p.owner, o, 0)  # died while registering: it announced nothing
            continue
        if not rb_cas_sc64(&p.owner, o, me):
            continue  # another reaper took it, or it changed
        _fault(FP_REAPER_TOOK)
        if p.role == RB_ROLE_READER:
            ok = _reap_reader(h, done, i)
        else:
            ok = _reap_writer(h, slots, i)
        if ok:
            _fault(FP_REAPER_RELEASED)
            if rb_cas_sc64(&p.owner, me, 0):
                rb_add_sc64(&h.reaped_readers if p.role == RB_ROLE_READER else &h.reaped_writers, 1)
                reaped += 1
        else:
            rb_cas_sc64(&p.owner, me, o)  # give it back as a dead process's entry, for a later pass
    if reaped:
        rb_wake_always(&h.space_futex)
        rb_wake_always(&h.data_futex)
    return reaped
