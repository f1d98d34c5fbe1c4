"""Live displays of a run and its control window (matplotlib; Tk when there is a screen).

- :mod:`~mimocorb.gui.screen`: whether windows can be shown, and where a display's
  figure goes (a Tk window, or an off-screen canvas when headless).
- :mod:`~mimocorb.gui.snapshots`: PNG snapshots of a figure, written atomically into
  the run folder on a schedule.
- :mod:`~mimocorb.gui.feeds`: events from a buffer to a display, in a thread that never
  waits for the drawing.
- :mod:`~mimocorb.gui.oscilloscope`: observed waveforms (1.x ``plot_buffer``).
- :mod:`~mimocorb.gui.histograms`: live histograms of buffer fields with the lifetime
  fit for decay times (1.x ``histogram_buffer``).
- :mod:`~mimocorb.gui.control_window`: the window of ``mimocorb run --gui``.

Nothing here imports ``matplotlib.pyplot``: figures are plain
:class:`matplotlib.figure.Figure` objects on an explicit canvas, so a display works the
same in a forked worker, a spawned one and a process without a screen.
"""
