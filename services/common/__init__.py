"""Shared contracts, configuration and plumbing imported by every service."""
