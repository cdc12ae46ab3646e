"""Windows to readable summaries: the interface and factory, the extractive summarizer, the
LLM summarizer (``llm/``), and what they share (event weighting, sensitive words).
Imports ``core`` (and ``embedding`` where a check needs vectors)."""
