"""The knowledge base: record schema, safe loading, cross-record checks, citations."""
