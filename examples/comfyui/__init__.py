"""enhancer's ComfyUI node pack: copy this folder into ComfyUI/custom_nodes/ (see README.md)."""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web"  # web/enhancer.js: shows EnhancerShowText's text in the node

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
