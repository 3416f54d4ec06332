"""Question generation: the backend protocol, the offline item-model generator, framings."""
