"""Console entry points of the converters (see pyproject.toml's [project.scripts])."""
