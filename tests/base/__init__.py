"""The base of core/: presets, the database and its migrations, hardware."""
