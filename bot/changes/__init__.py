"""Confirmed production changes: rollback and scale proposals, confirmed by an allowed person,
carried out against Cloud Run, verified, and reported.
"""
