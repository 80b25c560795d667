"""Shared data contracts of Kota Malang's departments (one module per department)."""
