"""Benchmarks of mimocorb beside its peers (multiprocessing.Queue, faster-fifo)
and the in-process copy limit, run together with ``python -m benchmarks``.

Modules: ``machine`` (what ran where), ``procs`` (bounded process handling),
``events`` (the two event kinds and their checks), ``transports`` (the peers),
``throughput``, ``latency``, ``profile_small`` (where one small event's time
goes), ``report`` (table, targets, JSON). See benchmarks/README.md.
"""
