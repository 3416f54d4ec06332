"""Question generation: the backend protocol and the question row, the offline item-model backend and the Claude
backend."""
