"""The item index: searching it (``search``), building it (``build``), its build folders and
the CURRENT pointer (``folders``), the choice of FAISS index for a catalog (``choice``), GPU
search (``gpu``), and the index being served, hot-reloaded and rebuilt (``serving``)."""
