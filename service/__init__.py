"""interest-profiler: readable interest profiles, drift and recommendations from user events.

Nothing heavy is imported here: models, indexes and the database load when the app (or a CLI
command) builds its parts.
"""

__version__ = "0.1.0"
