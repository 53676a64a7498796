"""app/: every page through AppTest, and the running studio in a real browser."""
