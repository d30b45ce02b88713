"""The ``vmas`` command line."""
