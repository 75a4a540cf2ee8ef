"""Recordings: the PBX's short-lived, unauthenticated links fetched safely into S3."""
