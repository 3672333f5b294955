"""The SHA-256 of the shipped model's provenance file (fashion_lite0.json), written with it by
``make shipped-model``: the loader refuses any other file. Not to be edited by hand."""
PROVENANCE_SHA256 = "a07a710853cb48811ab1c773862e4d3a10ef8be3cccf8f220b70652d5860aa9b"
