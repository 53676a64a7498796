"""Command-line shells over ``core``: parse, call one core function, show the result."""
