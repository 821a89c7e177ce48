"""Alembic migrations of the app's database; ``storage.migrate.upgrade`` runs them at every start.

A new revision, drafted from the models, then read and edited by hand (data, SQLite batch mode)
and passed through `ruff check --fix` and `ruff format`::

    python -c "from alembic import command; from alembic.config import Config; c = Config(); \\
    c.set_main_option('script_location', 'storage/migrations'); \\
    c.set_main_option('sqlalchemy.url', 'sqlite:///data/rag.sqlite3'); \\
    command.revision(c, 'what it does', autogenerate=True, rev_id='0003')"
"""
