"""Exports: an adapter merged into its base model (`merge`), one GGUF file and an Ollama Modelfile (`gguf`), and
shipping a trained adapter as the embedded default with its model card (`modelcard`)."""
