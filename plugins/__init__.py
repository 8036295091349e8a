"""enhancer's built-in plugins. Each registers through the entry-point group "enhancer" in pyproject.toml,
exactly as a third-party plugin package does, so the core never special-cases them."""
