"""The search engine: photos in, ranked products out, kept up to date.

Its rooms, each a floor that imports only the floors below it and the core:

- :mod:`.embedding` turns photos into vectors and colour descriptors (the model, its runtime,
  shared batches, a catalogue's resumable embedding, in this process or on Ray);
- :mod:`.index` keeps an index on disk (faiss or Milvus vectors, the product table, the
  manifest's generations, checksums, the ledger of the engine's own files, metadata filters);
- :mod:`.engine`, here at the top, answers queries by photo, product or colour over both;
- :mod:`.serving` answers people over HTTP (the server, the web page, request limits,
  connection deadlines);
- the doors on top: :mod:`.commands` (the CLI's engine commands, with
  :mod:`.contact_sheet`) and :mod:`.widget` (the JupyterLab panel).

To add an index backend, give it :class:`.index.faiss_index.VectorIndex`'s ``search`` and ``add``.
"""
