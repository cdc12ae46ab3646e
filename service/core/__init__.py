"""What every part shares: the domain records (items, events, windows, profiles), the settings,
the API error type and content hashes. Imports nothing of the service."""
