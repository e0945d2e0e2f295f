"""The error raised for unusable training data."""


class DataError(ValueError):
    """Training data that cannot be used, with the file and line at fault."""

    def __init__(self, location: str, message: str):
        self.location = location
        self.message = message
        super().__init__(f"{location}: {message}")
