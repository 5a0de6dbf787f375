"""`from keras_forensics.explain import similarity_map` (the README's API): a facade of
keras_forensics.screening.explain, where the code lives. Nothing inside the package imports it."""

from keras_forensics.screening.explain import explain_pair, heat_overlay, last_conv_layer, saliency_map, similarity_map

__all__ = ["explain_pair", "heat_overlay", "last_conv_layer", "saliency_map", "similarity_map"]
