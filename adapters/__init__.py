"""Adapters: one package per department application, publishing its facts as events."""
