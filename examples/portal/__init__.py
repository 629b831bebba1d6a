"""The demo portal (first-party relying party)."""
