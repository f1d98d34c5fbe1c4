"""Soak test: writers, reader groups and random SIGKILLs for a given time.

    python tests/soak.py --duration 60          # what CI runs
    python tests/soak.py --duration 14400       # four hours on a lab PC

Rounds of two kinds take turns. A kill round starts 2 writers, a reader group
of 2 and a reader group of 1, kills one writer or one member of the first
group with SIGKILL at a random moment, and checks: no event delivered twice to
a group, none torn, no hang, the losses counted equal what the dead process
held. A churn round runs 2-3 writers while members of one group are killed
and replaced, a group is added late, another loses its only member and gets a
new one (orphaned, then started again), maybe a writer is killed, and an
observer checks every copy it takes; every event since each group's start is
delivered or counted lost, once. After every round nothing may be left in
/dev/shm. Prints the counts as it goes; exits 1 on the first violation.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fault_injection  # noqa: E402

from mimocorb.mimo_buffer import list_segments  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds to run (default 60)")
    ap.add_argument("--events", type=int, default=3000, help="events per writer and round")
    ap.add_argument("--slots", type=int, default=8, help="slots of the ring")
    ap.add_argument("--seed", type=int, default=int(time.time()), help="first round's seed")
    args = ap.parse_args(argv)
    if args.duration <= 0 or args.events < 1 or args.slots < 1:
        ap.error("--duration, --events and --slots must be positive")
    t0 = time.monotonic()
    rounds = events = 0
    killed: dict[str, int] = {}
    lost = {"dead_reader": 0, "abandoned_by_writer": 0}
    last_print = t0
    print(
        f"soak: {args.duration:.0f} s, {args.events} events per writer and round, {args.slots} slots, seed {args.seed}",
        flush=True,
    )
    churn = {"rounds": 0, "kills": 0, "copies": 0}
    while time.monotonic() - t0 < args.duration:
        seed = args.seed + rounds
        if rounds % 2:
            res = fault_injection.run_churn_round(n=args.events, nslots=args.slots, seed=seed)
            churn["rounds"] += 1
            churn["kills"] += len(res.killed)
            churn["copies"] += res.observed
            what = f"churn, killed {res.killed}"
            events += res.stats["published"]
        else:
            res = fault_injection.run_round(n=args.events, nslots=args.slots, seed=seed)
            killed[res.victim[0]] = killed.get(res.victim[0], 0) + 1
            events += int(res.seen_b.sum())
            what = f"killed {res.victim}"
        rounds += 1
        for g in res.stats["groups"]:
            for k in lost:
                lost[k] += g["lost"][k]
        # every buffer of a round is this process's (its children own none): other processes'
        # leftovers on the machine are none of the soak's business
        left = [s["name"] for s in list_segments() if s["pid"] == os.getpid()]
        if left:
            res.problems.append(f"left in /dev/shm: {left}")
        if res.problems:
            print(f"FAIL in round {rounds} (seed {seed}, {what}): {res.problems}")
            return 1
        now = time.monotonic()
        if now - last_print >= 5 or now - t0 >= args.duration:
            last_print = now
            print(
                f"{now - t0:7.0f} s  rounds {rounds}  events {events}  killed writers {killed.get('w', 0)} "
                f"readers {killed.get('a', 0)}  lost: held by dead readers {lost['dead_reader']}, "
                f"abandoned by dead writers {lost['abandoned_by_writer']}; churn rounds {churn['rounds']} "
                f"({churn['kills']} kills, {churn['copies']} observer copies checked)  (0 violations)",
                flush=True,
            )
    print(f"soak passed: {rounds} rounds, {events} events, no violation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
