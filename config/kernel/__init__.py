"""The shared kernel: what every app uses and that knows none of them (written-out SQL, the domain error,
the API's and the admin's common parts, migration operations, the PostgreSQL backend). It imports nothing
of the product's own; tests/unit/test_import_rules.py checks it."""
