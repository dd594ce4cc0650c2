"""The one place that reads and writes the database for the services and the worker,
split by what it stores. `queue` is the job queue: services enqueue through it in their own
transaction, and the worker claims from it, so `service/` never imports `jobs/`."""
