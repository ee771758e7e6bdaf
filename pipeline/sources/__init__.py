"""Sources: log files on disk (discovery, reading, damage) and tailing them live (rotation, checkpoints)."""
