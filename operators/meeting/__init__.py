"""Meeting transcriber steps after ASR: summary (map-reduce, grounded), redaction, output formats."""
