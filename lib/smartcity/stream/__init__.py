"""Stage 2 (02_stream): Kafka -> Spark Structured Streaming -> the Parquet lake, exactly once for
every reader, with bad messages quarantined."""
