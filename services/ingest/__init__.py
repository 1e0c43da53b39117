"""Ingest: posts from anywhere into lyssna.posts.raw."""
