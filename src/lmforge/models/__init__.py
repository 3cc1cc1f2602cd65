"""Resolve model references (directory, packaged alias, hub id) and load them offline."""
