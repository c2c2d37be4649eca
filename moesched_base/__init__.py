"""Small utilities every layer of moesched may use: atomic file writes (``atomic``) and reading JSON
files with errors naming the file and line (``json_file``).

This package sits at the very bottom of the dependency graph and imports nothing from the
project.
"""
