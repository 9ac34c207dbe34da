"""Vector + keyword stores for document chunks: the protocol and its engines."""
