"""Pure functions: predictions + references → numbers."""
