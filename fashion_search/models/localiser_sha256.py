"""The SHA-256 of the shipped garment localiser's heads (garment_localiser.npz), written with it
by ``make localiser``: the loader refuses any other file. Not to be edited by hand."""
HEAD_SHA256 = "7d89e11e42a3199a287c95624e01ae6ab05403e30d7cafaecba1fb025e9146a5"
