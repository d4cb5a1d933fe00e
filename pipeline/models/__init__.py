"""Multimodal layers, ResNet encoder, RefineNet decoder and the registry of CEN variants."""
from .registry import TABLE1, TABLE7, VARIANTS, Variant, get_variant
from .segnet import CENSegNet, ModelSpec, build_model, segmentation_loss

__all__ = ["TABLE1", "TABLE7", "VARIANTS", "Variant", "get_variant", "CENSegNet", "ModelSpec",
           "build_model", "segmentation_loss"]
