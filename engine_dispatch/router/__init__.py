"""The HTTP host of the dispatch core: ``moesched route`` (aiohttp reverse proxy over engines)."""
