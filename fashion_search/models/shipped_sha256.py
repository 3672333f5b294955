"""The SHA-256 of the shipped model's provenance file (fashion_lite0.json), written with it by
``make shipped-model``: the loader refuses any other file. Not to be edited by hand."""
PROVENANCE_SHA256 = "fe54904d85e2b5a60c93420500fcea998556cd0a24c4de11b445b1048479ce5c"
