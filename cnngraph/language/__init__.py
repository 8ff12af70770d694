"""The model language: grammar-driven parsing into located spec objects, typed options, settings sections."""
