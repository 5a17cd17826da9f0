"""Where activities run: the Backend protocol and the local (in-process) implementation."""
