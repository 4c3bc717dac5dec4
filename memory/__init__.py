"""Layered memory behind one router (arrives with the memory issue)."""
