"""The wire formats of the PBX's REST API."""
