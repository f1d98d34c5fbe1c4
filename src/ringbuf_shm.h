/*
 * ringbuf_shm.h -- layout of a mimocorb ring-buffer segment in POSIX shared
 * memory, plus the few primitives the Cython core needs that Cython cannot
 * spell itself: atomics with explicit memory orders, futex wait/wake, a cheap
 * wall clock and a process-liveness probe.
 *
 * Segment layout (every offset a multiple of 64):
 *
 *   rb_header                       geometry, cursors, wait words, groups, registry
 *   rb_slot[nslots]                 per-slot publication words and 1.x metadata
 *   uint64 done[RB_MAX_GROUPS][nslots]  per-group release marks (seq + 1)
 *   data[nslots * slot_stride]      event payloads, each slot 64-byte aligned
 *
 * Sequence numbers are 64-bit and only grow; a slot holds seq % nslots.  Every
 * word that stores a sequence stores seq + 1 so that zero means "never".
 *
 * Invariants (kept by the code in ringbuf.pyx):
 *  I1  A writer may fill the slot of seq s only when every gating group has
 *      release > s - nslots, i.e. all groups are done with seq s - nslots.
 *  I2  slot.pub == s + 1 (store-release) happens after the payload and the
 *      metadata of s are written; a reader that sees it (load-acquire) sees them.
 *  I3  A group hands out seq c only once (CAS on group.claim) and only when c is
 *      published or abandoned; its release cursor passes c only after done[c].
 *  I4  slot.wseq == s + 1 is stored before the payload of s is written (seqlock
 *      for observers, who copy and then re-check wseq).
 *  I5  A registry entry announces (held, held_n) before the CAS that claims
 *      them, so a reaper can tell what a dead process may have held.
 */
#ifndef MIMOCORB_RINGBUF_SHM_H
#define MIMOCORB_RINGBUF_SHM_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>

#define RB_MAGIC 0x62726f636f6d696dULL /* "mimocorb" read as little-endian */
#define RB_VERSION 1u
#define RB_LINE 64
#define RB_MAX_GROUPS 16
#define RB_MAX_PROCS 256

/* buffer states (header.state) */
#define RB_RUNNING 0u
#define RB_STOPPING 1u /* writers stopped; readers drain what was published */
#define RB_SHUTDOWN 2u /* readers end once nothing is left for them */
#define RB_CLOSED 3u   /* owner closed the buffer; everyone ends */

/* group states */
#define RB_GROUP_UNUSED 0u
#define RB_GROUP_ACTIVE 1u   /* gates the writers */
#define RB_GROUP_ORPHANED 2u /* every attached member died: does not gate */

/* registry roles */
#define RB_ROLE_WRITER 1u
#define RB_ROLE_READER 2u

#define RB_PID_REAPING (-1)

#define RB_ALIGNED __attribute__((aligned(RB_LINE)))

typedef struct {
    /* line: written only by the group's members */
    RB_ALIGNED uint64_t claim; /* next sequence the group hands out */
    /* line: written by members, read by writers when they look for space */
    RB_ALIGNED uint64_t release; /* every seq < release is done for this group */
    /* line: rarely written bookkeeping */
    RB_ALIGNED uint32_t state;
    uint32_t members_attached;
    uint32_t members_ever;
    uint32_t _pad0;
    uint64_t start_seq;       /* first sequence the group was responsible for */
    uint64_t lost_dead_reader; /* held by a member that died */
    uint64_t lost_orphaned;    /* published while no member was alive */
    uint64_t lost_abandoned;   /* abandoned by a dead or stopped writer */
    uint64_t _pad1[2];
} rb_group;

typedef struct {
    RB_ALIGNED int32_t pid; /* 0: free; RB_PID_REAPING while a reaper owns it */
    uint32_t role;
    uint32_t group;
    uint32_t held_n;  /* number of sequences held from `held` on (0: none) */
    uint64_t held;    /* first held sequence */
    uint64_t count;   /* events published (writer) or consumed (reader) */
    double deadtime_sum;
    uint64_t start_time; /* /proc starttime of pid, to tell pid reuse */
    uint64_t _pad[2];
} rb_proc;

typedef struct {
    /* line 0: immutable after creation */
    RB_ALIGNED uint64_t magic;
    uint32_t version;
    uint32_t header_bytes;
    uint64_t nslots;
    uint64_t slot_stride;   /* bytes between two slots' payloads (multiple of 64) */
    uint64_t payload_bytes; /* values_per_slot * itemsize */
    uint64_t slots_offset;
    uint64_t done_offset;
    uint64_t data_offset;
    /* line 1: immutable after creation */
    RB_ALIGNED uint64_t total_bytes;
    uint64_t token;      /* random id, also in every setup dict */
    uint64_t dtype_hash; /* hash of the dtype description, set by the Python layer */
    int32_t owner_pid;
    uint32_t values_per_slot;
    uint64_t owner_start_time;
    double created;
    uint64_t _pad1;
    /* line 2: the writers' claim cursor */
    RB_ALIGNED uint64_t write_claim;
    /* line 3: run state, written a handful of times per run */
    RB_ALIGNED uint32_t state;
    uint32_t paused;
    uint32_t ngroups;
    uint32_t _pad3;
    uint64_t abandoned_total;
    uint64_t retired_published;
    double retired_deadtime;
    uint64_t reaped_readers;
    uint64_t reaped_writers;
    uint64_t claim_limit; /* writers claim no sequence >= this (an exact event count for a run) */
    /* lines 4, 5: futex words, one line each so that sleeping on one does not
     * disturb the other side */
    RB_ALIGNED uint32_t data_futex;
    uint32_t data_waiting; /* 1 when a reader may sleep on data_futex */
    RB_ALIGNED uint32_t space_futex;
    uint32_t space_waiting; /* 1 when a writer may sleep on space_futex */
    RB_ALIGNED rb_group groups[RB_MAX_GROUPS];
    RB_ALIGNED rb_proc procs[RB_MAX_PROCS];
} rb_header;

typedef struct {
    RB_ALIGNED uint64_t pub; /* seq + 1 once published (I2) */
    uint64_t wseq;           /* seq + 1 once claimed for writing (I4) */
    uint64_t abandoned;      /* seq + 1 if that seq will never be published */
    int64_t counter;
    double timestamp;
    double deadtime;
    uint64_t _pad[2];
} rb_slot;

/* The layout is part of the on-disk (in-memory) format: check it at compile time. */
_Static_assert(sizeof(rb_group) == 3 * RB_LINE, "rb_group must be three cache lines");
_Static_assert(sizeof(rb_proc) == RB_LINE, "rb_proc must be one cache line");
_Static_assert(sizeof(rb_slot) == RB_LINE, "rb_slot must be one cache line");
_Static_assert(offsetof(rb_header, write_claim) % RB_LINE == 0, "write_claim on its own line");
_Static_assert(offsetof(rb_header, state) % RB_LINE == 0, "state on its own line");
_Static_assert(offsetof(rb_header, data_futex) - offsetof(rb_header, state) == RB_LINE, "run state fits one line");
_Static_assert(offsetof(rb_header, data_futex) % RB_LINE == 0, "data futex on its own line");
_Static_assert(offsetof(rb_header, space_futex) % RB_LINE == 0, "space futex on its own line");
_Static_assert(offsetof(rb_header, groups) % RB_LINE == 0, "groups aligned");
_Static_assert(sizeof(rb_header) % RB_LINE == 0, "header size a multiple of a line");

static inline size_t rb_header_size(void) { return sizeof(rb_header); }
static inline size_t rb_slot_size(void) { return sizeof(rb_slot); }

/* ---- atomics: every access names its order ------------------------------ */
static inline uint64_t rb_load_acq64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint64_t rb_load_rlx64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline uint64_t rb_load_sc64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void rb_store_rel64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void rb_store_rlx64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
/* A sequentially consistent store (xchg on x86): the store-load barrier that the
 * "publish, then look for sleepers" handshake needs. */
static inline void rb_store_sc64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline int rb_cas64(uint64_t *p, uint64_t expected, uint64_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
}
static inline uint64_t rb_add64(uint64_t *p, uint64_t v) { return __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST); }
static inline uint64_t rb_max64(uint64_t *p, uint64_t v) {
    uint64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (cur < v && !__atomic_compare_exchange_n(p, &cur, v, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
    }
    return cur < v ? v : cur;
}

static inline uint32_t rb_load_acq32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint32_t rb_load_sc32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void rb_store_rel32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void rb_store_sc32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t rb_add32(uint32_t *p, uint32_t v) { return __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t rb_sub32(uint32_t *p, uint32_t v) { return __atomic_sub_fetch(p, v, __ATOMIC_SEQ_CST); }
static inline int rb_cas32(uint32_t *p, uint32_t expected, uint32_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
}
static inline int rb_cas_i32(int32_t *p, int32_t expected, int32_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
}
static inline int32_t rb_load_acq_i32(const int32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void rb_store_rel_i32(int32_t *p, int32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

static inline void rb_fence_acq(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
static inline void rb_fence_rel(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
static inline void rb_fence_sc(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

static inline void rb_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

/* ---- futex on a word of the shared segment ------------------------------ */
/* Returns 0 when woken or the word changed, ETIMEDOUT, or EINTR (a signal for
 * Python to handle). The segment is shared between processes, so no
 * FUTEX_PRIVATE_FLAG. */
static inline int rb_futex_wait(uint32_t *word, uint32_t expected, double timeout_s) {
    struct timespec ts;
    ts.tv_sec = (time_t)timeout_s;
    ts.tv_nsec = (long)((timeout_s - (double)ts.tv_sec) * 1e9);
    long r = syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, NULL, 0);
    if (r == 0) return 0;
    if (errno == EAGAIN) return 0;
    return errno;
}

static inline void rb_futex_wake_all(uint32_t *word) {
    syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Sleeping and waking, one system call per sleep rather than per event.
 *
 * A waiter raises `waiting` (seq_cst), then re-checks its condition, then
 * sleeps on `word`. A waker first makes its progress visible (a seq_cst store),
 * then looks at `waiting`: the two seq_cst pairs form a Dekker handshake, so
 * either the waiter sees the progress or the waker sees the flag. The waker
 * that swaps the flag back to 0 bumps `word` and wakes everyone; later events
 * cost no system call until somebody raises the flag again. */
static inline void rb_announce_sleep(uint32_t *waiting) { __atomic_store_n(waiting, 1, __ATOMIC_SEQ_CST); }

static inline void rb_wake_if_waiting(uint32_t *word, uint32_t *waiting) {
    if (__atomic_load_n(waiting, __ATOMIC_SEQ_CST) != 0 && __atomic_exchange_n(waiting, 0, __ATOMIC_SEQ_CST) != 0) {
        __atomic_add_fetch(word, 1, __ATOMIC_SEQ_CST);
        rb_futex_wake_all(word);
    }
}

static inline void rb_wake_always(uint32_t *word) {
    __atomic_add_fetch(word, 1, __ATOMIC_SEQ_CST);
    rb_futex_wake_all(word);
}

/* ---- clocks -------------------------------------------------------------- */
static inline double rb_wall_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline double rb_mono_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- process liveness ---------------------------------------------------- */
/* starttime (field 22 of /proc/PID/stat, clock ticks since boot) and state;
 * returns 0 when the process does not exist. */
static inline int rb_proc_stat(int pid, uint64_t *start_time, char *state) {
    char path[64];
    char buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    /* the command name is in parentheses and may contain spaces: parse after the last ')' */
    char *p = strrchr(buf, ')');
    if (p == NULL || p[1] == '\0') return 0;
    p += 2; /* now at field 3, the state */
    *state = *p;
    int field = 3;
    while (*p && field < 22) {
        if (*p == ' ') field++;
        p++;
    }
    *start_time = (uint64_t)strtoull(p, NULL, 10);
    return 1;
}

/* 1 if pid runs (and, when start_time != 0, is the same process), else 0.
 * A zombie counts as dead: it holds nothing any more. */
static inline int rb_pid_alive(int pid, uint64_t start_time) {
    if (pid <= 0) return 0;
    if (kill(pid, 0) != 0 && errno == ESRCH) return 0;
    uint64_t st = 0;
    char state = '?';
    if (!rb_proc_stat(pid, &st, &state)) return 1; /* no /proc: trust kill() */
    if (state == 'Z' || state == 'X') return 0;
    if (start_time != 0 && st != start_time) return 0;
    return 1;
}

static inline uint64_t rb_self_start_time(void) {
    uint64_t st = 0;
    char state;
    if (!rb_proc_stat((int)getpid(), &st, &state)) return 0;
    return st;
}

#endif /* MIMOCORB_RINGBUF_SHM_H */
