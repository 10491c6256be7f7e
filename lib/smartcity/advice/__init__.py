"""Route advice while the fleet drives: a streaming query that knows the roads now (query), and the roads-now
routing it hands each window to (now)."""
