"""Running a whole DAQ from a setup file: access classes, setup validation, run control,
status, run folder and exporters (one job per module). User code imports the 1.x names
from :mod:`mimocorb.buffer_control`."""
