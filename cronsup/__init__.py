"""cronsup: a crontab-compatible supervisor daemon."""

__version__ = "0.1.0"
