"""fashion-search: find the catalogue products most similar to a photo.

Two wings share one core:

- the **pipeline** (:mod:`fashion_search.pipeline`) answers the research question, which
  backbone and recipe retrieve best, through the numbered notebooks 01–06;
- the **search engine** (:mod:`fashion_search.search`) serves a catalogue to people: the
  ``fashion-search`` commands, HTTP, a web page and a notebook panel.

Both read catalogues through :mod:`fashion_search.data`, build models through
:mod:`fashion_search.models`, read and frame photos with :mod:`fashion_search.images`, and
take their settings from :mod:`fashion_search.params`.
"""
from fashion_search import quiet_tensorflow

# Every module that loads TensorFlow imports this package first: its loading lines go unprinted.
quiet_tensorflow.install()

__version__ = "0.1.0"
