"""Throwaway Roost servers for tests: see `roost_pytest.plugin`."""
from roost_pytest.servers import RoostEnsemble, roost_binary

__all__ = ["RoostEnsemble", "roost_binary"]
