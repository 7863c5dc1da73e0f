"""Small utilities shared across vqgraph."""
