"""gdn: Grouped Decomposed Networks (Qiu, Zhao, Hu, ICIP 2020) for video action recognition."""

from gdn.models import create_model, list_models

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "__version__"]
