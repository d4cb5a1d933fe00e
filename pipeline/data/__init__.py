"""Datasets: the shared on-disk format (`format`) and the embedded synthetic generator (`synthetic`)."""
