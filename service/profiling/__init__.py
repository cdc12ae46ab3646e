"""From events to profiles: windows cut from a user's timeline, the profiler pipeline (window,
summarize, embed, store; refresh planning), and drift between windows' profiles.
Imports ``summarizers``, ``embedding``, ``store`` and ``core``."""
