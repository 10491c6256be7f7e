"""Stage 5 (05_redshift): the warehouse, loaded from the lake with COPY and queried with BI SQL:
PostgreSQL as Redshift's stand-in, or Redshift Serverless."""
