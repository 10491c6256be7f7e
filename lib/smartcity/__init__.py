"""Smart City streaming lab: simulated IoT fleet -> Kafka -> Spark -> Parquet lake -> catalog ->
Athena-style SQL -> Redshift-style warehouse -> maps. Modules mirror the notebooks (simulate,
stream, catalog, athena, redshift, route_map) over shared cores (config, contracts, kafka, spark,
lake, geo, engines, jvm)."""

import logging

__version__ = "0.1.0"

# Libraries log, applications decide where logs go. Without a handler of their own, kafka-python's
# and py4j's connection warnings would reach Python's last-resort handler and a notebook's stderr.
for _name in ("smartcity", "kafka", "py4j"):
    logging.getLogger(_name).addHandler(logging.NullHandler())
