"""Background work: the worker process and its schedules."""
