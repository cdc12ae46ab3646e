"""The LLM summarizer: model loading (bitsandbytes quantization), prompts, batching, the JSON
grammar for constrained decoding, and the checks every answer goes through."""
