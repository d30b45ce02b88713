"""Lightning training of VMAs: the LightningModule and the train entry point."""
