"""Models: the backbone registry, where ImageNet weights come from, building a feature
extractor, the fine-tuning recipes and their callbacks, and the model folder on disk.

To add a backbone, add it to :data:`fashion_search.backbone_specs.BACKBONES`; to add a
recipe, to :mod:`fashion_search.models.recipes` (and its name to ``params.RECIPES``).
"""
