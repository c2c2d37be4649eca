"""The GPU recipe: commands that reproduce the comparison on one 8-GPU node (see recipe.py)."""
