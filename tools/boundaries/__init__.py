"""Team boundary checks for this monorepo: ownership of changed paths and imports."""
