"""Shared test helpers (synthetic FERPlus folders, tiny grids, engine helpers)."""
