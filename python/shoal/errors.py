"""Errors raised by the Shoal client."""


class ShoalError(Exception):
    """A request Shoal refused or that no data node answered in time."""
