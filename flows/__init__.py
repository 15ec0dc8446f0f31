"""Prefect flows of the charlm pipeline: ingest-headlines, train-headlines, generate-headlines.

Each flow chains the thin tasks in `tasks/`; `flows/cli.py` runs the same task functions
without a Prefect server. Deployments (schedules, the event trigger, the work pool) are in
prefect.yaml at the project root; scripts/ starts a server and a worker and deploys.
"""
