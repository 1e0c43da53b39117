"""Classify: language, watched organizations, HR topics and sentiment."""
