"""``make bench``: one module per benchmark, results in ``outputs/bench/``."""
