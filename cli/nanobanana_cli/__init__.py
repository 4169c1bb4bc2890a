"""Offline tools: the local runner, the stand-in gateway and the command line."""
