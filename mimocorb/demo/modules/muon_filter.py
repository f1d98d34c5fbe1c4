"""Filter of the muon demo: find the decay double pulses (1.x ``calculate_decay_time``).

Reads raw events and, for every accepted double pulse, writes

- sink 1: its record (decay time and pulse parameters, see
  :func:`mimocorb.muon.pulse_finder.output_dtype`),
- sink 2 (optional): its raw waveform,
- sinks 3 and 4 (optional): its record again, to the buffer of decays with the
  electron going up (3) or down (4).

Metadata (counter, timestamp, deadtime) of the raw event is passed on. Several
processes share the work (``num_process`` in the setup): each takes batches of up to
``batch_size`` consecutive events (a read-only view of the ring-buffer slots, no copy)
and analyses them together, which shares the fixed cost of the analysis among them.
``batch_size: 1`` analyses event by event, exactly as the 1.x form built on
``rbTransfer`` does (:func:`mimocorb.demo.per_event.decay_time_per_event`); the results
are the same.

Config: the ``calculate_decay_time`` block (see :class:`~mimocorb.muon.pulse_finder.PulseFinder`)
and ``batch_size`` (default 32).
"""

from __future__ import annotations

import logging
import time

from mimocorb.mimo_buffer import Reader, Writer
from mimocorb.muon.pulse_finder import PulseFinder

logger = logging.getLogger("mimocorb.demo.filter")

#: After a batch of less than half the batch size (the filters are ahead of the source),
#: wait this long, so that the next batch is bigger: per event, a batch of 32 costs a
#: third of a single event's analysis. The raw buffer holds far more than this wait's events.
GATHER_WAIT = 0.002  # s


def calculate_decay_time(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    """Analyse every event of this process's share of the raw buffer until the run ends."""
    if not source_list or not sink_list:
        raise ValueError("calculate_decay_time: needs the raw buffer to read and at least one buffer to write")
    finder = PulseFinder(config_dict)
    batch_size = max(1, int(config_dict.get("batch_size", 32)))
    reader = Reader(source_list[0])
    writers = [Writer(d) for d in sink_list[:4]]
    records = writers[0]
    waveforms = writers[1] if len(writers) > 1 else None
    by_direction = {"up": writers[2], "down": writers[3]} if len(writers) > 3 else {}
    try:
        while True:
            events = reader.get_many(batch_size)  # SystemExit at the end of the run
            results = finder.analyse_batch(events)
            if 2 * len(events) < batch_size:
                time.sleep(GATHER_WAIT)
            if not any(results):
                continue
            metadata = reader.metadata_many()
            for event, match, md in zip(events, results, metadata):
                if match is None:
                    continue
                records.put(match.record, *md)
                if waveforms is not None:
                    waveforms.put(event, *md)
                sink = by_direction.get(match.direction)
                if sink is not None:
                    sink.put(match.record, *md)
    except SystemExit:
        pass  # end of the run
    finally:
        reader.release()
        logger.info(
            "calculate_decay_time: %d events, %d accepted (%.2f %%)",
            finder.n_events,
            finder.n_accepted,
            100.0 * finder.n_accepted / max(finder.n_events, 1),
        )
