"""The whole studio under faults: kills, full disks, damaged databases, hostile files (the corpus)."""
