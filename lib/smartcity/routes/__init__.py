"""Stage 6 (06_route_map): route suggestions learnt from what the sensors saw, and the proof that
they are better."""
