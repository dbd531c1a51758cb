"""What the service keeps: the SQLite registry (schema, migrations, `Store`), uploads, job
records, predictions, feedback, stored texts, and backups of it all. Imports no other room."""
