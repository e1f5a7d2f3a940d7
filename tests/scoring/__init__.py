"""Lead scoring tests."""
