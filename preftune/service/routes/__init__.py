"""The API's routers, one per resource: files, fine-tuning jobs, health and metrics."""
