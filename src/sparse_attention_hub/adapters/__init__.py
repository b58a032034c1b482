"""Model adapters: the Request contract and the Hugging Face implementation."""

from sparse_attention_hub.adapters.base import ModelAdapter, Request, RequestResponse

__all__ = ["ModelAdapter", "ModelAdapterHF", "Request", "RequestResponse"]


def __getattr__(name: str) -> object:
    # ModelAdapterHF pulls in transformers; load it only when asked for.
    if name == "ModelAdapterHF":
        from sparse_attention_hub.adapters.hf import ModelAdapterHF

        return ModelAdapterHF
    raise AttributeError(name)
