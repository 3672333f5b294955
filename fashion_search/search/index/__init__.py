"""The index on disk: the keeping room of the search engine.

It owns an index folder and everything in it: the vectors (:mod:`.faiss_index` or a Milvus
collection, :mod:`.milvus_index`), the product table and colours, the manifest's atomic
generations under one lock (:mod:`.generations`), seals and checksums (:mod:`.integrity`),
the folder's bookkeeping (:mod:`.index_folder`) and the ledger of the engine's own files, the
only ones it deletes or rewrites (:mod:`.ownership`); :mod:`.store` creates, opens and changes
an index with these, :mod:`.product_index` is one opened, and :mod:`.filters` says which rows a
query may return. It imports the core and the embedding room (for the model identity an index
records); never the engine or serving.
"""
