"""homevisits: keeps English schools' home visits to pupils safe and within policy."""

__version__ = "0.1.0"
