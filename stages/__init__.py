"""Thin DVC stage entry points: parse arguments, call `pipeline`, write outputs."""
