"""The pipeline protocol's `.proto` source and the command that compiles it."""
