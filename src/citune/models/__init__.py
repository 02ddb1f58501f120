from citune.models.loading import ModelBundle, load_model

__all__ = ["ModelBundle", "load_model"]
