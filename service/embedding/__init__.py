"""Text to vectors: the bundled sentence-transformers model (or its ONNX export) and the hashing
fake used by fast tests. Imports only ``core``."""
