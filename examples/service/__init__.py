"""The demo service (an integrated department service)."""
