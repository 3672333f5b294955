"""The notebook pipeline: one module per numbered notebook, chained by :mod:`.runner`.

01 data (:mod:`fashion_search.data`), 02 :mod:`.finetune`, 03 :mod:`.features`,
04 :mod:`.evaluate` (tables: :mod:`.report`), 05 :mod:`.plots`, 06 :mod:`.search_stage`.
"""
