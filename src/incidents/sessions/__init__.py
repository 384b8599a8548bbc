"""Live connection state: which stream connections are open, where, for whom."""
