import pytest


@pytest.fixture(autouse=True)
def _database(db: None) -> None:
    """Every demo test may touch the session table."""
