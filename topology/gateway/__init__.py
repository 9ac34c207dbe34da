"""The HTTP gateway: JSON and server-sent events for the products, and the web page."""
