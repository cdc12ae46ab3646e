"""From profiles to recommendations: the FAISS item index (choosing its settings, building,
build folders, loading, GPU search), the collaborative model, the candidate lists and their
fusion. Imports ``embedding``, ``store`` and ``core``."""
