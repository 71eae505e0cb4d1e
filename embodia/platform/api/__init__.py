"""The platform's REST API (layer 5, `embodia server`): FastAPI app over one workspace, scoped per project.

`auth` (hashed project tokens with scopes read < run < admin, rate limits), `app` (`create_app(store)`: error
handlers, request size limit, routers under /api/v1), `routes` (projects, jobs, artifacts, uploads, lineage,
registry, reports, pipelines, deployments), `schemas` (request/response models), `uploads` (safe archive
unpacking), `robots` (MJCF checks and sandboxed compile), `runs` (pipeline runs in server threads).
Every query is filtered by the caller's project; other tenants' ids answer 404.
"""
