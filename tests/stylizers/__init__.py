"""stylizers/: every style through the frame contract, and the registry."""
