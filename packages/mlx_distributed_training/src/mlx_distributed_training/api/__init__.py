"""Training job server: queues `mlx-train` runs and serves their state over HTTP.

`mlx-train-serve` (`server.main`) starts it. The SQLite job store (`store`)
stores jobs and their events. The runner (`runner`) starts each queued job as
its own `mlx-train` process, and `routes` exposes both under `/v1`.
"""
