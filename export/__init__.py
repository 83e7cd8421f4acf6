"""SavedModel and TFLite export (``tfrf.export``)."""
