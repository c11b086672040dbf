"""Reading weight files: safetensors and torch checkpoints as tensor sources, positional reads, streaming."""
