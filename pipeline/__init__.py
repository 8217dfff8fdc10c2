"""SPADE on faces: each stage is a module with a pure core and a `python -m pipeline.<stage>` CLI."""
