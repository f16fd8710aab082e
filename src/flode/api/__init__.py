"""The HTTP adapter: routing, content negotiation and headers. It knows no SQL."""
