"""Document ingestion: chunk (parse + split) → embed → index, one durable job per document."""
