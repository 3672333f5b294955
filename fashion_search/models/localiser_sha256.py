"""The SHA-256 of the shipped garment localiser's head (garment_localiser.npz), written with it
by ``make localiser``: the loader refuses any other file. Not to be edited by hand."""
HEAD_SHA256 = "c00023c9eeadffd44c62b2542da7646cef399c107cc427a6fbd0bb414f7e67fc"
