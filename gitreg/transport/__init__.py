"""Transport: verified, resumable image downloads and capped document fetches."""
