"""Publishing a model folder to the Hugging Face Hub in one verified commit."""
