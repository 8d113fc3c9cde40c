"""pytest fixtures: `roost_server` (a standalone Roost) and `roost_ensemble`
(three servers), each started for the test session and stopped after it.
Their `hosts` attribute is the connect string for kazoo or any client."""
import pytest

from roost_pytest.servers import RoostEnsemble


@pytest.fixture(scope="session")
def roost_server():
    with RoostEnsemble(1) as server:
        yield server


@pytest.fixture(scope="session")
def roost_ensemble():
    with RoostEnsemble(3) as ensemble:
        yield ensemble
