/*
 * ringbuf_shm.h -- layout of a mimocorb ring-buffer segment in POSIX shared
 * memory, plus the few primitives the Cython core needs that Cython cannot
 * spell itself: atomics with explicit memory orders, futex wait/wake, clocks,
 * process identities and a liveness probe.
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
 * Invariants (kept by the code in ringbuf.pyx, which names them where it keeps them):
 *  I1  A writer claims seq s only when (a) the slot's previous sequence
 *      s - nslots is published or abandoned, and fills it only when (b) every
 *      gating group has release > s - nslots.  (a) holds with no group at
 *      all, so two writers never write one slot at once, and, checked before
 *      the claim, it lets any claim be given back without a mark that runs
 *      ahead of an unfinished earlier lap.
 *  I2  slot.pub == s + 1 (store-release) happens after the payload and the
 *      metadata of s are written; a reader that sees it (load-acquire) sees
 *      them.  By I1a the words pub, abandoned, wseq and done only move forward.
 *  I3  A group hands out seq c only once (CAS on group.claim, which carries
 *      RB_HOLD while claims are closed) and only when c is published or
 *      abandoned; its release cursor passes c only after done[c] or the
 *      holder's own CAS of the cursor.
 *  I4  slot.wseq == s + 1 is stored before the payload of s is written (seqlock
 *      for observers, who copy and then re-check wseq).
 *  I5  A registry entry announces (held, held_n) before the CAS that claims
 *      them and withdraws the announcement only after what it held is
 *      published, abandoned or released, so a reaper can tell what a dead
 *      process may have held: a claimed, unfinished sequence that no live
 *      entry announces belongs to a dead one.
 *  I6  What a dead process held is finished exactly once, whatever else is
 *      dead: the mark that finishes it (done[], slot.abandoned) is set by a
 *      CAS that only moves it forward, and only the winner counts the loss.
 *      A group's loss counters are written only by the holder of its lock,
 *      as stores of a target value logged (log_seq, log_target) before the
 *      step they count: a successor that finds the step done stores the
 *      target, so a death between the step and the count loses nothing and
 *      counts nothing twice.  A writer logs the published count it will
 *      reach (pub_target) before it publishes what it claimed, so the reaper
 *      can finish the count of a batch it died in.
 *  I7  A group's state changes (start, re-start, orphaning) happen under the
 *      group's lock, whose word holds the holder's identity: a successor takes
 *      it over from a dead holder and redoes the steps, each idempotent.  A
 *      joiner changes cursors only after it holds the lock.
 *  I8  A group is orphaned only when, with its claims on hold, no live
 *      registered member is found (a Dekker pair with a joiner, who registers
 *      and then looks at the claim word).
 *
 * A process identity is (start time of the process, low 32 bits) << 32 | pid:
 * a pid reused by a new process gives another identity, so a CAS on an
 * identity word never mistakes the new process for the dead one.
 */
#ifndef MIMOCORB_RINGBUF_SHM_H
#define MIMOCORB_RINGBUF_SHM_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
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
#define RB_VERSION 2u
#define RB_LINE 64
#define RB_MAX_GROUPS 16
#define RB_MAX_PROCS 256

/* buffer states (header.state); they only move forward */
#define RB_RUNNING 0u
#define RB_STOPPING 1u /* writers stopped; readers drain what was published */
#define RB_SHUTDOWN 2u /* readers end once nothing is left for them */
#define RB_CLOSED 3u   /* owner closed the buffer; everyone ends */

/* group states */
#define RB_GROUP_UNUSED 0u
#define RB_GROUP_ACTIVE 1u   /* gates the writers; claims open unless RB_HOLD */
#define RB_GROUP_ORPHANED 2u /* no live member: does not gate; claims on hold */
#define RB_GROUP_STARTING 3u /* being (re)started under the lock: gates, claims on hold */

/* registry roles */
#define RB_ROLE_WRITER 1u
#define RB_ROLE_READER 2u

/* group.claim: bit 63 set while the group's claims are closed */
#define RB_HOLD (1ULL << 63)
/* slot.abandoned: bit 63 set when nothing was ever written into that sequence */
#define RB_VOID (1ULL << 63)

/* identity words (registry owner, group lock): flags in the pid half */
#define RB_ID_REAPING (1ULL << 31)  /* entry being reaped by this identity */
#define RB_ID_JOINING (1ULL << 30)  /* entry being filled in by this identity */
#define RB_ID_FLAGS (RB_ID_REAPING | RB_ID_JOINING)
#define RB_ID_PID(x) ((int)((x) & 0x3fffffffULL))

#define RB_ALIGNED __attribute__((aligned(RB_LINE)))

typedef struct {
    /* line: the members' claim cursor (RB_HOLD while claims are closed) */
    RB_ALIGNED uint64_t claim;
    /* line: written by members, read by writers when they look for space */
    RB_ALIGNED uint64_t release; /* every seq < release is done for this group */
    /* line: rarely written bookkeeping */
    RB_ALIGNED uint32_t state;
    uint32_t members_ever;     /* statistics only */
    uint64_t lock;             /* identity of the holder of the state lock (I7), 0: free */
    uint64_t start_seq;        /* first sequence of the group's current start */
    uint64_t lost_dead_reader; /* held by a member that died */
    uint64_t lost_orphaned;    /* published while no member was alive */
    uint64_t lost_abandoned;   /* abandoned by a dead or stopped writer */
    uint64_t log_seq;          /* kind << 62 | value: a counted step under way (I6), 0: none */
    uint64_t log_target;       /* the counter's value once that step is done */
    /* line: statistics, written under the lock */
    RB_ALIGNED uint64_t first_start; /* the write cursor when the group was added */
    uint64_t skipped_void;     /* claims given back unfilled that the group passed (not lost) */
    uint64_t _pad2[6];
} rb_group;

/* kinds of group.log_seq */
#define RB_LOG_DEAD 1ULL      /* value seq + 1: done[seq] marked for a dead member -> lost_dead_reader */
#define RB_LOG_ORPHANED 2ULL  /* value w: release moved to w at a (re)start -> lost_orphaned */
#define RB_LOG_SKIP 3ULL      /* value seq + 1: claim moved past an abandoned seq -> lost_abandoned */
/* the same step for a seq given back unfilled (RB_VOID) counts skipped_void: kind RB_LOG_SKIP with
 * the value's bit 61 set */
#define RB_LOG_VOID (1ULL << 61)
#define RB_LOG_VALUE(x) ((x) & ((1ULL << 61) - 1))

typedef struct {
    /* line 0: written by the owner at every claim and publication */
    /* 0: free; identity of the owner; or identity | RB_ID_JOINING / RB_ID_REAPING */
    RB_ALIGNED uint64_t owner;
    uint32_t role;
    uint32_t group;
    uint32_t held_n; /* number of sequences held from `held` on (0: none) */
    uint32_t _pad0;
    uint64_t held;   /* first held sequence */
    /* Statistics of the entry: they only grow, whoever owns the entry, and
     * only the owner (or the reaper that holds the dead owner's entry) writes
     * them, so totals are sums over the registry and nothing has to be moved
     * when an entry is reaped. */
    uint64_t published;  /* events published by writers through this entry */
    uint64_t pub_target; /* `published` once the batch being published is out (I6) */
    uint64_t consumed;   /* events consumed by readers through this entry */
    double deadtime_sum;
    /* line 1 */
    RB_ALIGNED uint64_t base; /* published or consumed when the present owner registered */
    uint64_t _pad1[7];
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
    uint64_t owner_id;   /* identity of the creating process */
    uint32_t values_per_slot;
    uint32_t _pad1a;
    double created;
    uint64_t _pad1[2];
    /* line 2: the writers' claim cursor */
    RB_ALIGNED uint64_t write_claim;
    /* line 3: run state, read by every claim, written a handful of times per run */
    RB_ALIGNED uint32_t state;
    uint32_t paused;
    uint32_t ngroups;
    uint32_t group_epoch; /* bumped by every change of a group's gating: writers' cached tails expire */
    uint64_t claim_limit; /* writers claim no sequence >= this (an exact event count for a run) */
    uint64_t abandoned_total;
    uint64_t void_total; /* claimed but never filled (end of run): skipped, not lost */
    uint64_t reaped_readers;
    uint64_t reaped_writers;
    uint64_t _pad3;
    /* lines 4, 5: futex words, one line each so that sleeping on one does not
     * disturb the other side */
    RB_ALIGNED uint32_t data_futex;
    uint32_t data_waiting; /* 1 when a reader may sleep on data_futex */
    uint32_t lap_waiting;  /* 1 when a writer may sleep on space_futex for another writer (I1a) */
    RB_ALIGNED uint32_t space_futex;
    uint32_t space_waiting; /* 1 when a writer may sleep on space_futex for a group */
    RB_ALIGNED rb_group groups[RB_MAX_GROUPS];
    RB_ALIGNED rb_proc procs[RB_MAX_PROCS];
} rb_header;

typedef struct {
    RB_ALIGNED uint64_t pub; /* seq + 1 once published (I2) */
    uint64_t wseq;           /* seq + 1 once claimed for writing (I4) */
    uint64_t abandoned;      /* seq + 1 (| RB_VOID) if that seq will never be published */
    int64_t counter;
    double timestamp;
    double deadtime;
    uint64_t _pad[2];
} rb_slot;

/* The layout is part of the in-memory format: check it at compile time. */
_Static_assert(sizeof(rb_group) == 4 * RB_LINE, "rb_group must be four cache lines");
_Static_assert(sizeof(rb_proc) == 2 * RB_LINE, "rb_proc must be two cache lines");
_Static_assert(sizeof(rb_slot) == RB_LINE, "rb_slot must be one cache line");
_Static_assert(offsetof(rb_header, total_bytes) == RB_LINE, "line 1");
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
/* Every read-modify-write is seq_cst, and says so in its name (_sc): each one is
 * a step of a Dekker pair or of a hand-over between processes somewhere, and on
 * x86 a locked instruction costs the same whatever order it is given. Plain
 * (non-atomic) accesses to the segment are commented where they are made:
 * payload and metadata (ordered by I2/I4), fields written before an object is
 * published, and statistics written by one owner. */
static inline int rb_cas_sc64(uint64_t *p, uint64_t expected, uint64_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
}
static inline uint64_t rb_add_sc64(uint64_t *p, uint64_t v) { return __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST); }
/* Move *p forward to v (never back); returns 1 when this call moved it. */
static inline int rb_advance_sc64(uint64_t *p, uint64_t v) {
    uint64_t cur = __atomic_load_n(p, __ATOMIC_SEQ_CST);
    while (cur < v) {
        if (__atomic_compare_exchange_n(p, &cur, v, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) return 1;
    }
    return 0;
}

static inline uint32_t rb_load_acq32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint32_t rb_load_sc32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void rb_store_rel32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void rb_store_sc32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t rb_add_sc32(uint32_t *p, uint32_t v) { return __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST); }
static inline int rb_cas_sc32(uint32_t *p, uint32_t expected, uint32_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
}

/* doubles written by one owner and read by the statistics: whole 64-bit words */
static inline void rb_store_rel_f64(double *p, double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    __atomic_store_n((uint64_t *)p, bits, __ATOMIC_RELEASE);
}
static inline double rb_load_acq_f64(const double *p) {
    uint64_t bits = __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE);
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

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
    if (timeout_s < 0.0) timeout_s = 0.0;
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
 * A waiter first reads the futex word (v), then raises `waiting` (seq_cst),
 * then re-checks its condition, then sleeps on the word while it still holds v.
 * A waker first makes its progress visible (a seq_cst store), then looks at
 * `waiting`; the one that swaps it back to 0 bumps the word and wakes everyone.
 * The two seq_cst pairs form a Dekker handshake: either the waiter sees the
 * progress, or the waker sees the flag and bumps the word after the waiter
 * read v, so the futex call returns at once.  Reading v before raising the
 * flag matters: a waker that clears the flag between the two would otherwise
 * leave a sleeper that nobody wakes. */
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

static inline void rb_sleep_s(double s) {
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    nanosleep(&ts, NULL);
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

/* ---- is a core free? (the spinning wait asks before it spins) ------------- */
/* Does the machine have a core for another process while this one runs? The
 * fourth field of /proc/loadavg is "runnable/total": tasks runnable right now,
 * this one included. A spinning waiter spins only when fewer than all online
 * cores are busy, so the process it waits for has one. Unknown: 1 (spin). */
static inline int rb_core_free(void) {
    char buf[160];
    int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 1;
    buf[n] = 0;
    char *p = buf;
    for (int i = 0; i < 3; i++) {
        p = strchr(p, ' ');
        if (!p)
            return 1;
        p++;
    }
    long runnable = strtol(p, NULL, 10);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (runnable <= 0 || cores <= 0)
        return 1;
    return runnable < cores;
}

/* ---- processes: identity and liveness ------------------------------------ */
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

static inline uint64_t rb_make_ident(int pid, uint64_t start_time) {
    return ((start_time & 0xffffffffULL) << 32) | ((uint64_t)(uint32_t)pid & 0x3fffffffULL);
}

/* This process's identity, cached per pid (a forked child computes its own). */
static pid_t rb_ident_pid = 0;
static uint64_t rb_ident_cached = 0;

static inline uint64_t rb_self_ident(void) {
    pid_t pid = getpid();
    if (pid != rb_ident_pid) {
        uint64_t st = 0;
        char state;
        if (!rb_proc_stat((int)pid, &st, &state)) st = 0;
        rb_ident_cached = rb_make_ident((int)pid, st);
        rb_ident_pid = pid;
    }
    return rb_ident_cached;
}

/* 1 if the process of this identity runs, else 0. Flags are ignored.  A zombie
 * counts as dead: it holds nothing any more.  Without /proc, kill() decides. */
static inline int rb_ident_alive(uint64_t ident) {
    int pid = RB_ID_PID(ident);
    if (pid <= 0) return 0;
    if (kill(pid, 0) != 0 && errno == ESRCH) return 0;
    uint64_t st = 0;
    char state = '?';
    if (!rb_proc_stat(pid, &st, &state)) return 1;
    if (state == 'Z' || state == 'X') return 0;
    if ((st & 0xffffffffULL) != (ident >> 32)) return 0; /* the pid was reused */
    return 1;
}

static inline int rb_pid_alive(int pid) {
    if (pid <= 0) return 0;
    if (kill(pid, 0) != 0 && errno == ESRCH) return 0;
    uint64_t st = 0;
    char state = '?';
    if (!rb_proc_stat(pid, &st, &state)) return 1;
    return !(state == 'Z' || state == 'X');
}

#endif /* MIMOCORB_RINGBUF_SHM_H */
