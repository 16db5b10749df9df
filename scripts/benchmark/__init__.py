"""The benchmark behind `make bench` (entry point: scripts/bench.py): places orders over HTTP and measures
what the saga costs and how long it takes.

By default it builds the production topology itself and removes it afterwards: a fresh PostgreSQL database, a
fresh RabbitMQ vhost, `migrate`, gunicorn, one `celery -A config worker` and `celery -A config beat`. With
`--url` it measures a deployment that is already running instead (and only creates its own product and
accounts through the API). Then, unless `--skip-embedded`, it measures the embedded default (one gunicorn
process on SQLite with the in-process transport, no DATABASE_URL and no BROKER_URL). `--celery-workers` and
`--split-consumers` measure scaled-out workers.

Before the phases, a self-started run measures the raw parts alone on its own database and vhost, so that the
product's cost per saga can be set against the sum of what it is made of on this machine, at this time.

Modules, by concern:
- cli: the options, the order of the run, the cleanup on the way out;
- topology: the processes, the database and the vhost the bench starts; deployments: the systems under test;
- phases: which phases there are and what each places (the place to add one); load: the load generators;
  runner: one phase from start to figures; api: the HTTP client; polling: how an order is seen final;
  records: what is recorded of an order and a phase;
- raw_parts: the parts measured alone; cpu: CPU accounting from /proc; request_cpu: the web CPU of single
  requests (a status read, a POST, /health/live), measured after each phase; flash_sale: the flash sale's
  invariants, read from the database;
- stats: percentiles, spreads and rates; figures: a phase's figures from its records, and the run's ratios;
- report: what is printed and written; targets: the figures the product is held to.
"""
