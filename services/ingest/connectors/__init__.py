"""Pull connectors, one module per source, behind one small interface."""
