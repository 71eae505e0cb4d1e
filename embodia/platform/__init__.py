"""embodia's platform layer (4): records and runs the stages of layers 2-3.

`store` (workspace: SQLite by default, PostgreSQL via EMBODIA_DB_URL; Alembic migrations), `artifacts`
(content-addressed files), `registry` (artifacts, lineage, model versions and aliases), `queue` + `worker` +
`runjob` + `jobtypes` (durable jobs run one stage per process), `stages` (the stage table: configs, inputs,
kinds), `pipeline` + `runner` + `steps` (cached YAML pipelines), `deploy` (supervised policy servers). Each
module's docstring lists its public API; nothing is imported here, so `import embodia.platform` stays cheap.
"""
