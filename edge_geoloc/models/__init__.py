"""Models: a registry of retrieval encoders and heat-map localizers over timm backbones."""

from edge_geoloc.models.registry import create_model, get_entry, list_models, register_model

__all__ = ["create_model", "get_entry", "list_models", "register_model"]
