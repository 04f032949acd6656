"""nbkit: notebook toolkit for PyTorch + Hugging Face."""
__version__ = "0.1.0"
