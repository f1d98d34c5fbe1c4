# The C layout of a ring-buffer segment and its primitives, declared to Cython
# once (ringbuf_shm.h is the truth; sizes come from its constants).

from libc.stdint cimport int64_t, uint32_t, uint64_t


cdef extern from "ringbuf_shm.h" nogil:
    enum:
        RB_LINE
        RB_MAX_GROUPS
        RB_MAX_PROCS

    uint64_t RB_MAGIC
    uint32_t RB_VERSION
    uint32_t RB_RUNNING
    uint32_t RB_STOPPING
    uint32_t RB_SHUTDOWN
    uint32_t RB_CLOSED
    uint32_t RB_GROUP_UNUSED
    uint32_t RB_GROUP_ACTIVE
    uint32_t RB_GROUP_ORPHANED
    uint32_t RB_GROUP_STARTING
    uint32_t RB_ROLE_WRITER
    uint32_t RB_ROLE_READER
    uint64_t RB_HOLD
    uint64_t RB_VOID
    uint64_t RB_ID_REAPING
    uint64_t RB_ID_JOINING
    uint64_t RB_ID_FLAGS
    int RB_ID_PID(uint64_t ident)
    uint64_t RB_LOG_DEAD
    uint64_t RB_LOG_ORPHANED
    uint64_t RB_LOG_SKIP
    uint64_t RB_LOG_VOID
    uint64_t RB_LOG_VALUE(uint64_t x)

    ctypedef struct rb_group:
        uint64_t claim
        uint64_t release
        uint32_t state
        uint32_t members_ever
        uint64_t lock
        uint64_t start_seq
        uint64_t lost_dead_reader
        uint64_t lost_orphaned
        uint64_t lost_abandoned
        uint64_t log_seq
        uint64_t log_target
        uint64_t first_start
        uint64_t skipped_void

    ctypedef struct rb_proc:
        uint64_t owner
        uint32_t role
        uint32_t group
        uint32_t held_n
        uint64_t held
        uint64_t published
        uint64_t pub_target
        uint64_t consumed
        double deadtime_sum
        uint64_t base

    ctypedef struct rb_header:
        uint64_t magic
        uint32_t version
        uint32_t header_bytes
        uint64_t nslots
        uint64_t slot_stride
        uint64_t payload_bytes
        uint64_t slots_offset
        uint64_t done_offset
        uint64_t data_offset
        uint64_t total_bytes
        uint64_t token
        uint64_t dtype_hash
        uint64_t owner_id
        uint32_t values_per_slot
        double created
        uint64_t write_claim
        uint32_t state
        uint32_t paused
        uint32_t ngroups
        uint32_t group_epoch
        uint64_t claim_limit
        uint64_t abandoned_total
        uint64_t void_total
        uint64_t reaped_readers
        uint64_t reaped_writers
        uint32_t data_futex
        uint32_t data_waiting
        uint32_t lap_waiting
        uint32_t space_futex
        uint32_t space_waiting
        rb_group groups[RB_MAX_GROUPS]
        rb_proc procs[RB_MAX_PROCS]

    ctypedef struct rb_slot:
        uint64_t pub
        uint64_t wseq
        uint64_t abandoned
        int64_t counter
        double timestamp
        double deadtime

    size_t rb_header_size()
    size_t rb_slot_size()

    uint64_t rb_load_acq64(const uint64_t *p)
    uint64_t rb_load_rlx64(const uint64_t *p)
    uint64_t rb_load_sc64(const uint64_t *p)
    void rb_store_rel64(uint64_t *p, uint64_t v)
    void rb_store_rlx64(uint64_t *p, uint64_t v)
    void rb_store_sc64(uint64_t *p, uint64_t v)
    bint rb_cas_sc64(uint64_t *p, uint64_t expected, uint64_t desired)
    uint64_t rb_add_sc64(uint64_t *p, uint64_t v)
    bint rb_advance_sc64(uint64_t *p, uint64_t v)
    uint32_t rb_load_acq32(const uint32_t *p)
    uint32_t rb_load_sc32(const uint32_t *p)
    void rb_store_rel32(uint32_t *p, uint32_t v)
    void rb_store_sc32(uint32_t *p, uint32_t v)
    uint32_t rb_add_sc32(uint32_t *p, uint32_t v)
    bint rb_cas_sc32(uint32_t *p, uint32_t expected, uint32_t desired)
    void rb_store_rel_f64(double *p, double v)
    double rb_load_acq_f64(const double *p)
    void rb_fence_acq()
    void rb_fence_rel()
    void rb_fence_sc()
    void rb_cpu_relax()

    int rb_futex_wait(uint32_t *word, uint32_t expected, double timeout_s)
    void rb_announce_sleep(uint32_t *waiting)
    void rb_wake_if_waiting(uint32_t *word, uint32_t *waiting)
    void rb_wake_always(uint32_t *word)
    void rb_sleep_s(double s)

    double rb_wall_time()
    double rb_mono_time()
    bint rb_core_free()

    uint64_t rb_self_ident()
    bint rb_ident_alive(uint64_t ident)
    bint rb_pid_alive(int pid)
