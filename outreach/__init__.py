"""outreach: keep in touch with customers without pestering them."""

__version__ = "0.1.0"
