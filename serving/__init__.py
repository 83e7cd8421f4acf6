"""TF-Serving client, configuration and local development server (``tfrf.serving``)."""
