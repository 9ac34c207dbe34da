"""Product evaluations: WER today; DER, retrieval, faithfulness and latency budgets to come."""
