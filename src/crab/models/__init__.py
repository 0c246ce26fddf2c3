"""Model components: the BEATs audio encoder (more encoders, projectors and the LLM wrapper live beside it)."""
