"""Small utilities every layer of moesched may use: atomic file writes.

This package sits at the very bottom of the dependency graph and imports nothing from the
project.
"""
