"""Stage 3 (03_catalog): the lake's tables registered where SQL engines look them up: a crawler
into DuckDB, or the AWS Glue Data Catalog."""
