"""Stage 1 (01_simulate): the fleet's events into Kafka, keyed, acknowledged, counted."""
