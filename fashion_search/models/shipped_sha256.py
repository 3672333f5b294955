"""The SHA-256 of the shipped model's provenance file (fashion_lite0.json), written with it by
``make shipped-model``: the loader refuses any other file. Not to be edited by hand."""
PROVENANCE_SHA256 = "46f184bc8d0eda5ca58bc5d750e6f60d4f168033134efc397d2d437d1f35520b"
