"""``preftune dashboard``: a local, read-only web view of run directories."""
