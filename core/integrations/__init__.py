"""Drop-ins for other projects' prompt-enhancer call shapes (`enhancer.integrations.wan`)."""
