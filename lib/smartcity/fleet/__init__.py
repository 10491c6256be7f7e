"""Stage 1 (01_simulate): the simulated IoT fleet on the corridor's roads, its sensors, and the
event contracts every later stage reads."""
