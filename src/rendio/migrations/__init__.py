"""Alembic migrations, shipped inside the package so `rendio migrate` works from any install."""
