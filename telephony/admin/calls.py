"""Admin for telephony (filled in by its feature)."""
