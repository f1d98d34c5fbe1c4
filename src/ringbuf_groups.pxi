# Part of src/ringbuf.pyx (the module mimocorb._ringbuf), included there in the order
# of the segment's layout; it shares that file's imports and declarations.

# ===========================================================================
# Groups: gating, start, orphaning
#
# I1b  Writers read the gating tail (the smallest release cursor of the groups
#      that gate: ACTIVE and STARTING) and cache it for one group epoch; every
#      change of a group's gating bumps the epoch, and within an epoch release
#      cursors only grow, so a cached tail is never too high.
# I3   Members claim with a CAS on group.claim; RB_HOLD in that word closes
#      claims (the CAS of a member expects a word without it).
# I7   State changes happen under the group's lock, taken over from a dead
#      holder; each step below can be redone by the successor.
# I8   A group is orphaned only when its claims are on hold and then no live
#      registered member is found. A joiner registers (seq_cst) and then reads
#      the claim word (seq_cst): either the orphaning process sees the joiner
#      and opens claims again, or the joiner sees the hold and settles the
#      group itself (start it again) once it holds the lock.
# ===========================================================================

cdef inline uint64_t _gating_tail(rb_header *h) noexcept nogil:
    """Smallest release cursor of the groups that gate the writers (NO_TAIL when none does)."""
    cdef uint32_t ng = rb_load_acq32(&h.ngroups)
    cdef uint32_t g, st
    cdef uint64_t t = NO_TAIL
    cdef uint64_t r
    for g in range(ng):
        st = rb_load_acq32(&h.groups[g].state)
        if st == RB_GROUP_ACTIVE or st == RB_GROUP_STARTING:
            r = rb_load_acq64(&h.groups[g].release)
            if r < t:
                t = r
    return t


cdef inline void _bump_epoch(rb_header *h) noexcept nogil:
    rb_add_sc32(&h.group_epoch, 1)


cdef bint _group_trylock(rb_header *h, uint64_t *done, uint32_t g) noexcept nogil:
    """Take group g's state lock, or take it over from a dead holder (I7) and
    finish the counted step that holder may have left half done (I6)."""
    cdef rb_group *grp = &h.groups[g]
    cdef uint64_t me = rb_self_ident()
    cdef uint64_t cur = rb_load_acq64(&grp.lock)
    if cur == 0:
        if not rb_cas_sc64(&grp.lock, 0, me):
            return False
    elif cur != me and not rb_ident_alive(cur):
        if not rb_cas_sc64(&grp.lock, cur, me):
            return False
    else:
        return False  # a live holder (possibly another thread of this process)
    _group_recover(h, done, g)
    _fault(FP_GROUP_LOCKED)
    return True


cdef void _group_recover(rb_header *h, uint64_t *done, uint32_t g) noexcept nogil:
    """Lock held: a logged step whose count is missing gets its count (I6).
    The counters are written only under the lock, so storing the logged
    target is right whether the dead holder counted or not."""
    cdef rb_group *grp = &h.groups[g]
    cdef uint64_t n = h.nslots
    cdef uint64_t *done_g = done + <uint64_t>g * n
    cdef uint64_t log = rb_load_sc64(&grp.log_seq)
    cdef uint64_t v, kind, target
    if log == 0:
        return
    kind = log >> 62
    v = RB_LOG_VALUE(log)
    target = rb_load_acq64(&grp.log_target)
    if kind == RB_LOG_DEAD:
        if rb_load_sc64(&done_g[(v - 1) % n]) >= v or rb_load_sc64(&grp.release) >= v:
            rb_store_rel64(&grp.lost_dead_reader, target)
    elif kind == RB_LOG_ORPHANED:
        if rb_load_sc64(&grp.release) >= v:
            rb_store_rel64(&grp.lost_orphaned, target)
    elif kind == RB_LOG_SKIP:
        if (rb_load_sc64(&grp.claim) & ~RB_HOLD) >= v:  # the skip's CAS was done: finish it
            rb_advance_sc64(&done_g[(v - 1) % n], v)
            rb_store_rel64(&grp.skipped_void if log & RB_LOG_VOID else &grp.lost_abandoned, target)
            _advance_release(grp, done_g, n)
    rb_store_sc64(&grp.log_seq, 0)


cdef inline void _log_step(rb_group *grp, uint64_t kind, uint64_t value, uint64_t target) noexcept nogil:
    rb_store_rel64(&grp.log_target, target)
    rb_store_sc64(&grp.log_seq, kind << 62 | value)


cdef inline void _log_clear(rb_group *grp) noexcept nogil:
    rb_store_sc64(&grp.log_seq, 0)


cdef inline void _group_unlock(rb_group *grp) noexcept nogil:
    rb_store_rel64(&grp.lock, 0)


cdef bint _has_live_member(rb_header *h, uint32_t g) noexcept nogil:
    """Is a live process registered as a member of group g?"""
    cdef int i
    cdef uint64_t o
    cdef rb_proc *p
    for i in range(RB_MAX_PROCS):
        p = &h.procs[i]
        o = rb_load_sc64(&p.owner)
        if o == 0 or (o & RB_ID_FLAGS) or p.role != RB_ROLE_READER or p.group != g:
            continue
        if rb_ident_alive(o):
            return True
    return False


cdef void _set_hold(rb_group *grp, bint hold) noexcept nogil:
    cdef uint64_t c
    while True:
        c = rb_load_sc64(&grp.claim)
        if ((c & RB_HOLD) != 0) == hold:
            return
        if rb_cas_sc64(&grp.claim, c, (c | RB_HOLD) if hold else (c & ~RB_HOLD)):
            return


cdef void _group_start(rb_header *h, rb_group *grp, bint count_lost) noexcept nogil:
    """(Re)start a group, lock held: it gates, then starts at the write cursor
    w read after the writers' cached tails expired (I1b). A successor that
    took the lock over redoes what is left; each step is idempotent."""
    cdef uint64_t c, w, r
    if rb_load_sc32(&grp.state) == RB_GROUP_ORPHANED:
        rb_store_sc32(&grp.state, RB_GROUP_STARTING)  # gates from the old release cursor on
    _bump_epoch(h)
    _fault(FP_GROUP_STARTING)
    c = rb_load_sc64(&grp.claim)
    if c & RB_HOLD:
        # Every writer that filled a sequence without seeing this group gate
        # claimed it before w; the group starts at w and never reads those.
        w = rb_load_sc64(&h.write_claim)
        while True:
            r = rb_load_sc64(&grp.release)
            if r >= w:
                break
            if count_lost:  # what was published while no member lived (I6: logged, then moved, then counted)
                _log_step(grp, RB_LOG_ORPHANED, w, rb_load_acq64(&grp.lost_orphaned) + (w - r))
            if rb_cas_sc64(&grp.release, r, w):
                _fault(FP_GROUP_MOVED)
                if count_lost:
                    rb_store_rel64(&grp.lost_orphaned, rb_load_acq64(&grp.log_target))
                    _log_clear(grp)
                break
        rb_store_rel64(&grp.start_seq, w)
        if not count_lost:
            rb_store_rel64(&grp.first_start, w)  # a new group: what it passes from here on is its own
        rb_cas_sc64(&grp.claim, c, w)  # claims open at w (nobody else changes a word on hold)
    rb_store_sc32(&grp.state, RB_GROUP_ACTIVE)
    _bump_epoch(h)
    rb_wake_always(&h.space_futex)  # writers that slept on the interim gate
    rb_wake_always(&h.data_futex)   # members that waited for the claims to open


cdef void _group_settle(rb_header *h, uint32_t g, bint member) noexcept nogil:
    """Bring group g to a stable state, lock held: ACTIVE with claims open when
    a live member is registered, ORPHANED otherwise (I8). `member`: the caller
    is a live registered member. Called by joiners, by members that met a
    hold, by the reaper after a member died and by retire_group; redone by
    whoever takes the lock over from a dead caller."""
    cdef rb_group *grp = &h.groups[g]
    cdef uint32_t st = rb_load_sc32(&grp.state)
    if st == RB_GROUP_STARTING:
        _group_start(h, grp, True)  # a start that a dead holder left half done; then as an active group
    elif st == RB_GROUP_ORPHANED:
        if member or _has_live_member(h, g):
            _group_start(h, grp, True)
        return
    elif st != RB_GROUP_ACTIVE:
        return
    if not (rb_load_sc64(&grp.claim) & RB_HOLD):
        if member or _has_live_member(h, g):
            return
        _set_hold(grp, True)  # close claims, then look again: the Dekker pair of I8
        _fault(FP_GROUP_HOLD)
    if member or _has_live_member(h, g):
        _set_hold(grp, False)
        rb_wake_always(&h.data_futex)
        return
    rb_store_sc32(&grp.state, RB_GROUP_ORPHANED)
    _bump_epoch(h)
    rb_wake_always(&h.space_futex)
