"""vlmeft: a runnable knowledge base of prompt and adapter fine-tuning for CLIP-like VLMs."""

__version__ = "0.1.0"
