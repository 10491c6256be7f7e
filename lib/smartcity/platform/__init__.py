"""The platform every stage stands on: child processes, JVM artifacts, the Kafka broker, Spark
sessions and standalone clusters, the PostgreSQL server, engine settings and where files go."""
