"""What the layers above share and none of them owns: the calc language (napkin math as data,
re-computed with pint), the item models written in it and the text shapes rendered from them,
and the JSON schema of a tool call. It imports nothing from generation/, quality/,
interchange/, storage/ or stages/ (tests/test_import_graph.py)."""
