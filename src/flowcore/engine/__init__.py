"""Engine: pure, deterministic replay of workflow code against its history (no I/O)."""
