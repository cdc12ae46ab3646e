"""Getting data in: item and event validation (shared by the REST API and the file loaders),
CSV/JSONL files, MovieLens in its layouts, and the demo data (a data file and its generator).
Imports only ``core``."""
