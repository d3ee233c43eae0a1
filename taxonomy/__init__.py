"""The knowledge base data (YAML only); shipped as package data."""
