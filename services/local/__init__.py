"""Running the whole stack on one machine: `make run`, `make up`, the demo receiver."""
