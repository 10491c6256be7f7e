"""Running the lab: the command line, the notebook runner, live mode, benchmarks, the capacity
model and AWS provisioning."""
