"""``python -m mimocorb.sources.simulators {scpi,mcpha} [options]``: run an instrument simulator."""

from __future__ import annotations

import argparse
import logging
import sys

from mimocorb.sources.simulators.mcpha_server import McphaSimulator
from mimocorb.sources.simulators.scpi_server import FAMILIES, ScpiSimulator
from mimocorb.sources.simulators.server import Faults
from mimocorb.sources.simulators.waveforms import WaveformSettings


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mimocorb.sources.simulators", description=__doc__)
    p.add_argument("kind", choices=("scpi", "mcpha"), help="the protocol: an SCPI scope socket or the MCPHA server")
    p.add_argument("--family", choices=FAMILIES, default="redpitaya", help="SCPI command family (scpi only)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: 5000 scpi, 1001 mcpha; 0: any free port)")
    p.add_argument("--rate", type=float, default=100.0, help="triggers per second after arming (default 100)")
    p.add_argument("--fixed", action="store_true", help="fixed intervals between triggers (default: random)")
    p.add_argument("--samples", type=int, default=None, help="samples per channel (default 16384, rigol 12000)")
    p.add_argument("--sample-time-ns", type=float, default=8.0, help="sample time (default 8 ns)")
    p.add_argument("--pre-trigger", type=int, default=1000, help="samples before the trigger (default 1000)")
    p.add_argument("--seed", type=int, default=None, help="seed of the waveforms (default: random)")
    p.add_argument("--never-trigger", action="store_true", help="fault: arming never leads to a trigger")
    p.add_argument("--drop-at", type=int, default=None, metavar="N", help="fault: drop the connection at event N")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rigol = args.kind == "scpi" and args.family == "rigol_ds1000z"
    waveforms = WaveformSettings(
        channels=4 if rigol else 2,
        samples=args.samples or (12000 if rigol else 16384),
        sample_time_ns=args.sample_time_ns,
        pre_trigger_samples=args.pre_trigger,
        rate=args.rate,
        random=not args.fixed,
        seed=args.seed,
    )
    faults = Faults(never_trigger=args.never_trigger, drop_at_event=args.drop_at)
    if args.kind == "scpi":
        port = 5000 if args.port is None else args.port
        server = ScpiSimulator(args.family, waveforms, host=args.host, port=port, faults=faults)
    else:
        port = 1001 if args.port is None else args.port
        server = McphaSimulator(waveforms, host=args.host, port=port, faults=faults)
    print(f"{server.kind} simulator on {server.host}:{server.port} (Ctrl-C ends it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
