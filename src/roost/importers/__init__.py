"""Importers: the configurations of other supervisors, as roost service files."""
