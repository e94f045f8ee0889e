"""Clouds behind the snapshot controller's ``external`` interface."""
