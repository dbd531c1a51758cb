"""Alembic's entry: migrations run on the connection `shim.store.registry.database` opened, in its
transaction. A new revision is written by `alembic.command.revision(config, message,
autogenerate=True, rev_id="<next schema version>")` on a registry at the head (see
tests/test_schema.py for the configuration)."""

from alembic import context

from shim.store.registry.tables import metadata

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata,
    render_as_batch=True,  # SQLite alters a table by copying it
)
with context.begin_transaction():
    context.run_migrations()
