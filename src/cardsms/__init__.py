"""cardsms: self-hosted card message platform."""

__version__ = "0.1.0"
