"""meshctl: a Babel-over-WireGuard mesh controller."""

__version__ = "0.1.0"
