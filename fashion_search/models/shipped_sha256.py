"""The SHA-256 of the shipped model's provenance file (fashion_lite0.json), written with it by
``make shipped-model``: the loader refuses any other file. Not to be edited by hand."""
PROVENANCE_SHA256 = "b45fe8217fcfdc64dd7b57dfa3cf0b9130e0a6e8f0124c5874fe4c805cff3988"
