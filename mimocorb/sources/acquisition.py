"""The acquisition loop that every instrument source shares: arm, wait, fetch, publish.

An instrument (SCPI scope, Red Pitaya MCPHA, PicoScope) supplies the five steps of
:class:`Instrument`; :func:`run_acquisition` drives them and keeps the guarantees:

- **Whole events only.** An event is assembled in a private record array and copied
  into the ring with one ``Writer.put`` once it is complete. If the link breaks or a
  data block is short or malformed, the record is dropped and nothing is published.
- **Reconnect or a clear end.** Such a failure closes the link and opens it again
  (connect and configure), retrying until ``reconnect_timeout`` has passed; then the
  source ends with :class:`InstrumentError`, whose message names the instrument.
- **Every wait is bounded.** The trigger is polled with short queries (each bounded
  by the link's I/O timeout), first after a pause learnt from the recent events, then
  with pauses growing up to ``poll_interval``;
  between polls the loop looks at the run state, so the end of the run (also Ctrl-C
  in the run control) stops a source that waits for a trigger within one poll.
  ``trigger_timeout`` ends the source cleanly when no trigger comes for that long.
  Ctrl-C in a source run on its own (KeyboardInterrupt) closes the link on its way out.
- **Metadata.** ``counter`` is the trigger number (1, 2, ... counted by the source;
  a trigger whose data was lost in a link failure leaves a gap), ``timestamp`` the
  trigger time (the instrument's, where it reports one, else the host's time when the
  trigger was seen), ``deadtime`` the fraction of the time since the previous event
  during which the instrument was not armed.
- While the run is paused the instrument is not armed (no events are taken).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

import numpy as np

from mimocorb import mimo_buffer as bm

logger = logging.getLogger(__name__)

FIRST_POLL_SLEEP = 1e-4  # s: the first sleep between two trigger polls; doubled up to poll_interval
RECONNECT_SLEEP = (0.05, 1.0)  # s: first and longest pause between two reconnect attempts
PAUSE_SLEEP = 0.02  # s: how often a paused source looks at the run state


class InstrumentError(RuntimeError):
    """An instrument cannot be used (no connection, lost for good, or it reports a wrong setting)."""


class LinkLost(Exception):
    """The link to the instrument broke or delivered malformed data; the event in progress is dropped."""


class Instrument(Protocol):
    """What :func:`run_acquisition` needs of an instrument."""

    #: Names the instrument in messages, e.g. ``"redpitaya scope TCPIP::rp-f0::5000::SOCKET"``.
    name: str
    #: Exceptions of the instrument's library that mean "link broken or data malformed".
    link_errors: tuple
    #: Events delivered by one arm/fetch cycle (1; the segments of a PicoScope rapid block).
    events_per_cycle: int

    def open(self) -> None:
        """Connect and configure; raise :class:`LinkLost` or a link error when it fails."""

    def close(self) -> None:
        """Close the link; never raises."""

    def arm(self) -> None:
        """Make the instrument wait for the next trigger(s)."""

    def triggered(self) -> bool:
        """One short poll: True once the armed acquisition is complete."""

    def fetch(self, records: np.ndarray) -> Sequence[Optional[float]]:
        """Fill ``records[:k]`` completely and return the k trigger times (None: unknown)."""


@dataclass
class AcquisitionSettings:
    """The timing keys every instrument source shares (see the sources' docstrings)."""

    number_of_events: int = 0  # 0: until the run ends
    poll_interval: float = 0.005  # s
    trigger_timeout: Optional[float] = None  # s; None: wait as long as the run goes on
    reconnect_timeout: float = 10.0  # s


def add_settings_keys(cfg, settings: AcquisitionSettings) -> AcquisitionSettings:
    """Read the shared keys from a :class:`~mimocorb.sources.config_check.ConfigReader`."""
    return AcquisitionSettings(
        number_of_events=cfg.integer("number_of_events", settings.number_of_events, minimum=0),
        poll_interval=cfg.number("poll_interval", settings.poll_interval, minimum=0.0, maximum=1.0, unit="s"),
        trigger_timeout=cfg.number("trigger_timeout", settings.trigger_timeout, minimum=0.0, exclusive_minimum=True),
        reconnect_timeout=cfg.number("reconnect_timeout", settings.reconnect_timeout, minimum=0.0, unit="s"),
    )


SETTINGS_KEYS = ("number_of_events", "poll_interval", "trigger_timeout", "reconnect_timeout")


def _reopen(
    instrument: Instrument, writer: bm.Writer, timeout: float, since: float, first: bool, cause: BaseException
) -> bool:
    """Close and re-open the link until it opens (True) or the run ends (False).

    ``since`` is when the failures began (``time.monotonic()``): a link that opens but
    fails again before an event came through does not restart the clock. Raises
    InstrumentError once ``timeout`` has passed since then (after at least one attempt
    when this is the ``first`` failure)."""
    errors = (LinkLost, *instrument.link_errors)
    deadline = since + timeout
    pause = RECONNECT_SLEEP[0]
    last: BaseException = cause
    while True:
        instrument.close()
        if not writer.active:
            return False
        if time.monotonic() >= deadline and not first:
            raise InstrumentError(
                f"{instrument.name}: connection lost ({cause}) and not restored within {timeout:g} s "
                f"(last attempt: {last})"
            ) from last
        first = False
        try:
            instrument.open()
            logger.warning("%s: reconnected", instrument.name)
            return True
        except errors as exc:
            last = exc
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(2 * pause, RECONNECT_SLEEP[1])


class _TriggerWait:
    """Polls the trigger state: first after a learnt pause, then in growing steps.

    Each poll is a query on the link and each sleep a timer wake-up, both costly at
    hundreds of events per second. The pause before the first poll is adapted towards
    a quantile of the time from arming to the trigger: shortened a little when the first
    poll finds the trigger, lengthened three times as much when it does not, so that
    about three first polls in four find it. At a steady rate an event then takes about
    1.3 polls, and the trigger is seen soon after it came.
    An idle instrument is polled at least every ``poll_interval``."""

    STEP = 0.02  # of the observed wait: shorter after a hit, 3 x STEP longer after a miss

    def __init__(self, settings: AcquisitionSettings):
        self.settings = settings
        self.first = 0.0  # s: the learnt pause before the first poll

    def __call__(self, instrument: Instrument, writer: bm.Writer, t_armed: float) -> Optional[float]:
        """Host time when the trigger was seen; None when the run ended or no trigger came in time."""
        s = self.settings
        t0 = time.monotonic()
        if self.first > 0:
            time.sleep(min(self.first, s.poll_interval))
        pause = max(FIRST_POLL_SLEEP, min(0.25 * self.first, s.poll_interval))
        polls = 0
        while writer.active:
            polls += 1
            if instrument.triggered():
                t_seen = time.time()
                wait = max(t_seen - t_armed, 0.0)
                if polls == 1:
                    self.first = max(0.0, self.first - self.STEP * wait)
                else:
                    self.first = 0.5 * wait if self.first == 0.0 else self.first + 3 * self.STEP * wait
                return t_seen
            if s.trigger_timeout is not None and time.monotonic() - t0 >= s.trigger_timeout:
                logger.warning(
                    "%s: no trigger within trigger_timeout = %g s; the source ends", instrument.name, s.trigger_timeout
                )
                return None
            time.sleep(pause)
            pause = min(2 * pause, s.poll_interval)
        return None


def _wait_while_paused(writer: bm.Writer) -> bool:
    while writer.paused and writer.active:
        time.sleep(PAUSE_SLEEP)
    return writer.active


def run_acquisition(
    instrument: Instrument, sink_setup: dict, settings: AcquisitionSettings, buffer_name: str = "sink"
) -> int:
    """Take events from ``instrument`` into the buffer of ``sink_setup`` until the run ends.

    Returns the number of events published. Raises :class:`InstrumentError` when the
    first connection fails or a lost link is not restored within ``reconnect_timeout``.
    """
    errors = (LinkLost, *instrument.link_errors)
    writer = bm.Writer(sink_setup)
    records = np.zeros((instrument.events_per_cycle, writer.values_per_slot), dtype=np.dtype(writer.dtype))
    published = triggers = 0
    wait_for_trigger = _TriggerWait(settings)
    try:
        try:
            instrument.open()
        except errors as exc:
            raise InstrumentError(f"{instrument.name}: cannot connect: {exc}") from exc
        logger.info("%s: connected, writing to %s", instrument.name, buffer_name)
        t_prev = time.time()
        failing_since: Optional[float] = None  # first failure since the last event that came through
        while settings.number_of_events == 0 or published < settings.number_of_events:
            if not _wait_while_paused(writer):
                break
            try:
                instrument.arm()
                t_armed = time.time()
                t_seen = wait_for_trigger(instrument, writer, t_armed)
                if t_seen is None:
                    break
                first_trigger = triggers + 1
                triggers += instrument.events_per_cycle
                times = instrument.fetch(records)
            except errors as exc:
                # the record is private: a partly received event is simply dropped here
                logger.warning("%s: %s: event dropped, reconnecting", instrument.name, exc)
                first_failure = failing_since is None
                if first_failure:
                    failing_since = time.monotonic()
                if not _reopen(instrument, writer, settings.reconnect_timeout, failing_since, first_failure, exc):
                    break
                continue
            failing_since = None
            t_done = time.time()
            cycle = max(t_done - t_prev, 1e-9)
            dead = min(max(1.0 - (t_seen - t_armed) / cycle, 0.0), 1.0)
            for i, t in enumerate(times):
                if settings.number_of_events and published >= settings.number_of_events:
                    break
                writer.put(records[i], first_trigger + i, t_seen if t is None else t, dead)
                published += 1
            t_prev = t_done
    except SystemExit:
        pass  # the run is ending: Writer.put raises SystemExit
    finally:
        instrument.close()
        writer.close()
    logger.info("%s: %d events published (%d triggers)", instrument.name, published, triggers)
    return published
