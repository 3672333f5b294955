"""Photos to vectors: the embedding room of the search engine.

It owns the model an index is built and queried with (:mod:`.embedder`: loading, identity,
photos → vectors and colour descriptors), what runs that model (:mod:`.runtime`: ONNX Runtime
or TensorFlow), model calls shared between concurrent requests (:mod:`.batching`) and a
catalogue's resumable embedding (:mod:`.embedding_jobs`), in this process or on Ray
(:mod:`.ray_embedding`, with :mod:`.ray_reaper` ending a Ray it started). It imports only the
core (parameters, photos, colour, catalogues, models); never the index, the engine or serving.
"""
