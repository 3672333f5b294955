"""Serving over HTTP: the room that answers people on the network.

It owns the HTTP API and the web page (:mod:`.server` and ``web/``), snapshots of the index
a request searches and the locks around changes (:mod:`.service`), the limits every request
is read under (:mod:`.request_limits`), a deadline for every connection state
(:mod:`.connections`) and the API pages served without internet (:mod:`.offline_docs`). It
imports the engine, the index and embedding rooms and the core; only the CLI's commands import it.
"""
