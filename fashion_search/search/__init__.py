"""The search engine: photos in, ranked products out, kept up to date.

:mod:`.embedder` (photos → vectors and colours) → :mod:`.faiss_index` (nearest neighbours,
filters without holes) inside :mod:`.store` (the index on disk; its files, lock and atomic
generations in :mod:`.generations`) →
:mod:`.engine` (queries by photo, product or colour) → its doors: :mod:`.commands` (CLI),
:mod:`.server` (HTTP and the web page, behind :mod:`.request_limits`), :mod:`.widget` (JupyterLab), :mod:`.contact_sheet`.
To add an index backend, give it :class:`.faiss_index.VectorIndex`'s ``search`` and ``add``.
"""
