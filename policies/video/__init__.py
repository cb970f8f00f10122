"""World-model video sources (contract section 9): the `sim` stand-in, external folders, conditioning export."""
