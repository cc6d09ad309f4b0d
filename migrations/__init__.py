"""Alembic environment and versions of the gpnas database schema (shipped with the package).

Apply with ``gpnas db upgrade``; ``alembic -c migrations/alembic.ini ...`` works from a checkout.
"""
