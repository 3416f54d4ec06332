"""Question generation: the backend protocol, item models (whole question designs), the offline and Claude backends."""
