"""berth's operator side: spec, PKI, connectors, facts, operations, phases, lab and CLI."""
