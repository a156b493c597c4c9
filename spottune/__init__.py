from spottune.spottune import SpotTune, SpotTuneGlobal
from spottune.methods import Method, create_method, get_method, list_methods, register_method

__version__ = "0.1.0"
__all__ = ["SpotTune", "SpotTuneGlobal", "Method", "create_method", "get_method", "list_methods",
           "register_method"]
