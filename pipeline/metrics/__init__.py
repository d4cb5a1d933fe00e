"""Segmentation metrics from one confusion matrix over a whole split."""
from .segmentation import confusion_matrix, scores

__all__ = ["confusion_matrix", "scores"]
