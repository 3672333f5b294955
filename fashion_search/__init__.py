"""fashion-search: find the catalogue products most similar to a photo.

One module per stage of the pipeline: ``config`` → ``catalog`` → ``finetune`` →
``features`` → ``index`` / ``evaluate`` → ``plots``; ``pipeline`` chains the notebooks.
"""
__version__ = "0.1.0"
