"""storefunnel: marketing generates leads, sales converts them, the data joins the two."""

__version__ = "0.1.0"
