"""HTTP servers: the OpenAI videos protocol in front of any video backend (`enhancer video serve`)."""
