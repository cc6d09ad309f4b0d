"""The application layer: what the API routes, the CLI commands and the agent call as thin
adapters (campaign planning here; ingest, job completion and refits are the repositories'
transactions and :class:`~search_service.refit.Refitter`)."""
