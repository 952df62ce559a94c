"""Patches proposed to Captum, one folder per pull request (see docs/upstream.md)."""
