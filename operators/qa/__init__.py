"""The document QA query flow: rewrite → retrieve → rerank → answer (assemble + generate) → verify."""
