"""Short-link resolver and the card renderer (shared with the console's phone preview)."""
