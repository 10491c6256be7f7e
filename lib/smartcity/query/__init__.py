"""Stage 4 (04_athena): the Athena (Trino) SQL files, run on DuckDB or on Amazon Athena."""
