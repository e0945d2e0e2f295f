"""Process groups, the mlx.launch front end and the collective watchdog."""
