"""detoxd: a digital-detox daemon."""

__version__ = "0.1.0"
