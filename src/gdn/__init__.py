"""gdn: Grouped Decomposed Networks (Qiu, Zhao, Hu, ICIP 2020) for video action recognition."""

from gdn.models import create_model, list_models

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "load_model", "__version__"]


def __getattr__(name: str):
    # `gdn.load_model` reads the data and engine packages: imported on first use, so that
    # `import gdn` (and every command) does not pay for them.
    if name == "load_model":
        from gdn.convert import load_model

        return load_model
    raise AttributeError(f"module 'gdn' has no attribute {name!r}")
