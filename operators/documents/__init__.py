"""Documents: parse (Markdown, plain text, HTML) and structure-aware chunking for Document QA."""
from operators.documents.chunk import Chunk, approx_tokens, chunk_document, content_hash
from operators.documents.parse import Block, ParsedDocument, parse_document

__all__ = ["Block", "Chunk", "ParsedDocument", "approx_tokens", "chunk_document",
           "content_hash", "parse_document"]
